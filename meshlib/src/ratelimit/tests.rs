use std::time::Duration;

use super::*;

fn bucket(max: u32, per_fill: u32, interval_ms: u64) -> TokenBucket {
    TokenBucket::new(max, per_fill, Duration::from_millis(interval_ms))
}

#[tokio::test(start_paused = true)]
async fn a_full_bucket_lets_max_tokens_through_then_one_per_token_period() {
    // Envoy's documented example shape: 10 at once, 5 more per second.
    let limiter = LocalRateLimiter::new(LocalRateLimit::enforced(bucket(10, 5, 1000))).unwrap();
    let passed = (0..15)
        .filter(|_| matches!(limiter.check(), Decision::Allowed { .. }))
        .count();
    assert_eq!(passed, 10, "the bucket starts full");
    // A token comes back every 200 ms (1 s / 5), continuously.
    match limiter.check() {
        Decision::Refused { reset } => assert_eq!(reset, Duration::from_millis(200)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    tokio::time::advance(Duration::from_millis(199)).await;
    assert!(matches!(limiter.check(), Decision::Refused { .. }));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(limiter.check(), Decision::Allowed { remaining: Some(0) });
    // After a quiet second, five tokens are back, not more.
    tokio::time::advance(Duration::from_secs(1)).await;
    let passed = (0..10)
        .filter(|_| matches!(limiter.check(), Decision::Allowed { .. }))
        .count();
    assert_eq!(passed, 5);

    let stats = limiter.stats();
    assert_eq!(stats.enabled(), 15 + 3 + 10);
    assert_eq!(stats.ok(), 10 + 1 + 5);
    assert_eq!(stats.rate_limited(), stats.enforced());
    assert_eq!(stats.shadow_limited(), 0);
}

#[tokio::test(start_paused = true)]
async fn over_ten_seconds_the_rate_holds() {
    let limiter = LocalRateLimiter::new(LocalRateLimit::enforced(bucket(5, 20, 1000))).unwrap();
    let mut passed = 0;
    // A request every millisecond for 10 s: 5 at once, then 20 a second.
    for _ in 0..10_000 {
        if matches!(limiter.check(), Decision::Allowed { .. }) {
            passed += 1;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    assert!((200..=206).contains(&passed), "{passed} passed");
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_refusals_and_lets_requests_through() {
    let limiter =
        LocalRateLimiter::new(LocalRateLimit::enforced(bucket(2, 1, 1000)).shadow()).unwrap();
    let decisions: Vec<Decision> = (0..4).map(|_| limiter.check()).collect();
    assert_eq!(decisions[2], Decision::ShadowRefused);
    assert_eq!(decisions[3], Decision::ShadowRefused);
    let stats = limiter.stats();
    assert_eq!(
        (
            stats.rate_limited(),
            stats.enforced(),
            stats.shadow_limited()
        ),
        (2, 0, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_limit_not_enabled_checks_nothing() {
    let mut settings = LocalRateLimit::enforced(bucket(1, 1, 1000));
    settings.filter_enabled = 0.0;
    let limiter = LocalRateLimiter::new(settings).unwrap();
    assert!((0..100).all(|_| limiter.check() == Decision::Allowed { remaining: None }));
    assert_eq!(limiter.stats().enabled(), 0);
}

#[tokio::test]
async fn bad_settings_name_the_field() {
    let cases = [
        (
            LocalRateLimit::enforced(bucket(0, 1, 1000)),
            "token_bucket.max_tokens",
        ),
        (
            LocalRateLimit::enforced(bucket(1, 0, 1000)),
            "token_bucket.tokens_per_fill",
        ),
        (
            LocalRateLimit::enforced(bucket(1, 1, 10)),
            "token_bucket.fill_interval",
        ),
        (
            LocalRateLimit {
                filter_enforced: 150.0,
                ..LocalRateLimit::enforced(bucket(1, 1, 1000))
            },
            "filter_enforced",
        ),
    ];
    for (settings, field) in cases {
        let error = LocalRateLimiter::new(settings).unwrap_err();
        assert_eq!(error.field, field, "{error}");
    }
    let defaults: LocalRateLimit =
        serde_json::from_str(r#"{"token_bucket": {"max_tokens": 3, "fill_interval": "1s"}}"#)
            .unwrap();
    assert_eq!(
        (
            defaults.filter_enabled,
            defaults.filter_enforced,
            defaults.token_bucket.tokens_per_fill
        ),
        (0.0, 0.0, 1),
        "Envoy's defaults: nothing enforced until asked for"
    );
    let odd = LocalRateLimit {
        status: 200,
        ..LocalRateLimit::enforced(bucket(1, 1, 1000))
    };
    assert_eq!(odd.refusal_status(), http::StatusCode::TOO_MANY_REQUESTS);
}
