//! An index of a virtual host's routes by path, so a request is tested only
//! against the routes that could match it.
//!
//! Every `path` route is filed under its path and every `prefix` or
//! `path_separated_prefix` route under its prefix, both lower-cased so one
//! lookup serves case-sensitive and case-insensitive routes alike; `safe_regex`
//! routes are candidates for every path. The index may offer a route that does
//! not match (a case-sensitive route found by its lower-cased key, a
//! `path_separated_prefix` followed by something other than `/`): each
//! candidate is still tested with its full matcher. It never leaves out a
//! route that matches.
//!
//! A lookup walks the path once, carrying a running hash of its lower-cased
//! bytes; at each length some prefix has, it looks up that many bytes. The
//! candidates come as lists of route numbers, each sorted, and are merged in
//! route order, so the first candidate that matches is the first route of
//! the virtual host that matches: first-match-wins exactly as a linear scan.
//!
//! Routes filed under one key that differ by the exact value of one header
//! (a tenant or version header on a shared prefix, the shape of generated
//! meshes) are split once more: when at least [`SPLIT_MIN`] routes share a
//! key and most of them require an exact, case-sensitive value of the same
//! header, those routes are filed under that value, and a request is offered
//! only the routes filed under its value beside the key's other routes. The
//! value is read as the matcher reads it, so no route that could match is
//! left out.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::PathMatch;

/// Route numbers, each list in ascending order.
type Routes = Box<[u32]>;

/// A key needs this many routes before they are split by a header.
pub(super) const SPLIT_MIN: usize = 8;

/// What the index needs of one route: its path rule, and the headers (by a
/// number the caller gives each distinct header) whose exact, case-sensitive
/// value it requires.
#[derive(Debug)]
pub(super) struct RouteKeys<'a> {
    pub(super) path: &'a PathMatch,
    pub(super) exact_headers: Vec<(u32, &'a str)>,
}

#[derive(Debug, Default)]
pub(super) struct PathIndex {
    /// `safe_regex` routes: candidates for every path.
    always: Candidates,
    exact: KeyMap,
    prefixes: KeyMap,
    /// `prefix_lengths[n]`: some prefix is `n` bytes long.
    prefix_lengths: Box<[bool]>,
}

/// The routes filed under one key.
#[derive(Debug, Default)]
struct Candidates {
    /// Candidates whatever the request's headers.
    unsplit: Routes,
    /// Routes that require header `.0` to have one exact value, by value.
    by_header: Option<(u32, ByValue)>,
}

/// Routes filed by the exact value (its bytes) one header must have.
type ByValue = HashMap<Box<[u8]>, Routes>;

/// A lower-cased key and the routes filed under it.
type Filed = (Box<[u8]>, Candidates);

/// Keys and their routes, by the keys' hash.
type KeyMap = HashMap<u64, Box<[Filed]>, BuildHasherDefault<KeyHasher>>;

impl PathIndex {
    /// Indexes routes by their path rule and required header values, `routes[i]`
    /// being route `i`'s.
    pub(super) fn new<'a>(routes: impl IntoIterator<Item = RouteKeys<'a>>) -> Self {
        let routes: Vec<RouteKeys<'a>> = routes.into_iter().collect();
        let mut always = Vec::new();
        let mut exact: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        let mut prefixes: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else {
                // Beyond four billion routes a route can only be found by scanning.
                break;
            };
            match route.path {
                PathMatch::Exact(path) => exact.entry(lower(path)).or_default().push(i),
                PathMatch::Prefix(prefix) | PathMatch::PathSeparatedPrefix(prefix) => {
                    prefixes.entry(lower(prefix)).or_default().push(i)
                }
                PathMatch::Regex(_) => always.push(i),
            }
        }
        let longest = prefixes.keys().map(Vec::len).max();
        let mut prefix_lengths = vec![false; longest.map_or(0, |n| n + 1)];
        for key in prefixes.keys() {
            prefix_lengths[key.len()] = true;
        }
        PathIndex {
            always: Candidates::new(always, &routes),
            exact: key_map(exact, &routes),
            prefixes: key_map(prefixes, &routes),
            prefix_lengths: prefix_lengths.into(),
        }
    }

    /// The first route, in route order, that could match `path` (and the
    /// headers `header` reads by their number, as the matcher reads them) and
    /// passes `matches`. `matches` is called on candidates only and, unless
    /// more than 16 lists of them are found, in route order.
    pub(super) fn first_match<V: AsRef<[u8]>>(
        &self,
        path: &str,
        mut header: impl FnMut(u32) -> Option<V>,
        matches: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let mut search = Search::new(matches);
        search.offer(&self.always, &mut header);
        let bytes = path.as_bytes();
        let mut hash = KeyHash::new();
        for (len, wanted) in self.prefix_lengths.iter().enumerate() {
            if *wanted && let Some(routes) = find(&self.prefixes, hash, &bytes[..len]) {
                search.offer(routes, &mut header);
            }
            match bytes.get(len) {
                Some(byte) => hash.push(*byte),
                None => break,
            }
        }
        if !self.exact.is_empty() {
            let mut hash = hash;
            for byte in bytes.get(self.prefix_lengths.len()..).unwrap_or_default() {
                hash.push(*byte);
            }
            if let Some(routes) = find(&self.exact, hash, bytes) {
                search.offer(routes, &mut header);
            }
        }
        search.finish()
    }
}

impl Candidates {
    /// The candidates `routes` (ascending), split by the header most of them
    /// require an exact value of, if there are enough of them.
    fn new(routes: Vec<u32>, keys: &[RouteKeys<'_>]) -> Self {
        let exact = |route: u32| &keys[route as usize].exact_headers;
        let mut counts: HashMap<u32, usize> = HashMap::new();
        if routes.len() >= SPLIT_MIN {
            for &route in &routes {
                let mut seen: Vec<u32> = exact(route).iter().map(|(h, _)| *h).collect();
                seen.sort_unstable();
                seen.dedup();
                for h in seen {
                    *counts.entry(h).or_default() += 1;
                }
            }
        }
        let best = counts
            .into_iter()
            .max_by_key(|&(h, n)| (n, std::cmp::Reverse(h)))
            .filter(|&(_, n)| n * 2 >= routes.len());
        let Some((header, _)) = best else {
            return Candidates {
                unsplit: routes.into(),
                by_header: None,
            };
        };
        let mut unsplit = Vec::new();
        let mut by_value: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for route in routes {
            // Any one required value will do: a route requiring two
            // different values of one header matches no request.
            match exact(route).iter().find(|(h, _)| *h == header) {
                Some((_, value)) => by_value
                    .entry(value.as_bytes().into())
                    .or_default()
                    .push(route),
                None => unsplit.push(route),
            }
        }
        Candidates {
            unsplit: unsplit.into(),
            by_header: Some((
                header,
                by_value
                    .into_iter()
                    .map(|(value, routes)| (value, routes.into()))
                    .collect(),
            )),
        }
    }
}

fn lower(key: &str) -> Vec<u8> {
    key.as_bytes().to_ascii_lowercase()
}

fn key_map(keys: HashMap<Vec<u8>, Vec<u32>>, routes: &[RouteKeys<'_>]) -> KeyMap {
    let mut map: HashMap<u64, Vec<Filed>> = HashMap::new();
    for (key, filed) in keys {
        let mut hash = KeyHash::new();
        for byte in &key {
            hash.push(*byte);
        }
        map.entry(hash.finish())
            .or_default()
            .push((key.into(), Candidates::new(filed, routes)));
    }
    map.into_iter()
        .map(|(hash, keys)| (hash, keys.into()))
        .collect()
}

/// The routes filed under `key` (compared ignoring ASCII case), whose running
/// hash is `hash`.
fn find<'a>(map: &'a KeyMap, hash: KeyHash, key: &[u8]) -> Option<&'a Candidates> {
    map.get(&hash.finish())?
        .iter()
        .find(|(filed, _)| filed.eq_ignore_ascii_case(key))
        .map(|(_, candidates)| candidates)
}

/// FNV-1a over lower-cased bytes: cheap to extend one byte at a time, so
/// every prefix of a path is hashed in one pass.
#[derive(Debug, Clone, Copy)]
struct KeyHash(u64);

impl KeyHash {
    fn new() -> Self {
        KeyHash(0xcbf2_9ce4_8422_2325)
    }

    fn push(&mut self, byte: u8) {
        self.0 =
            (self.0 ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// The hash, its bits mixed (MurmurHash3's finalizer) so the map's
    /// buckets spread well.
    fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The keys of a [`KeyMap`] are hashes already.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in all the same.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Candidate lists merged in route order, without allocating: up to
/// `BATCH` lists at a time, each batch only looking below the best match of
/// the batches before.
struct Search<'a, F> {
    batch: [&'a [u32]; BATCH],
    len: usize,
    best: Option<u32>,
    matches: F,
}

const BATCH: usize = 16;

impl<'a, F: FnMut(u32) -> bool> Search<'a, F> {
    fn new(matches: F) -> Self {
        Search {
            batch: [&[]; BATCH],
            len: 0,
            best: None,
            matches,
        }
    }

    /// Offers a key's candidates: the unsplit ones, and those filed under
    /// the request's value of the splitting header.
    fn offer<V: AsRef<[u8]>>(
        &mut self,
        candidates: &'a Candidates,
        header: &mut impl FnMut(u32) -> Option<V>,
    ) {
        self.push(&candidates.unsplit);
        if let Some((name, by_value)) = &candidates.by_header
            && let Some(value) = header(*name)
            && let Some(routes) = by_value.get(value.as_ref())
        {
            self.push(routes);
        }
    }

    fn push(&mut self, routes: &'a [u32]) {
        if routes.is_empty() {
            return;
        }
        if self.len == BATCH {
            self.merge();
        }
        self.batch[self.len] = routes;
        self.len += 1;
    }

    fn finish(mut self) -> Option<u32> {
        self.merge();
        self.best
    }

    /// Tests the batch's routes in ascending order, below the best so far,
    /// until one matches.
    fn merge(&mut self) {
        let lists = &mut self.batch[..self.len];
        loop {
            let next = lists
                .iter()
                .enumerate()
                .filter_map(|(i, list)| list.first().map(|route| (*route, i)))
                .min();
            let Some((route, i)) = next else { break };
            if self.best.is_some_and(|best| route >= best) {
                break;
            }
            lists[i] = &lists[i][1..];
            if (self.matches)(route) {
                self.best = Some(route);
                break;
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(paths: &[PathMatch]) -> PathIndex {
        PathIndex::new(paths.iter().map(|path| RouteKeys {
            path,
            exact_headers: Vec::new(),
        }))
    }

    fn no_header(_: u32) -> Option<&'static str> {
        None
    }

    /// Every candidate offered for `path`, in the order offered.
    fn candidates(index: &PathIndex, path: &str) -> Vec<u32> {
        candidates_with(index, path, no_header)
    }

    fn candidates_with(
        index: &PathIndex,
        path: &str,
        header: impl FnMut(u32) -> Option<&'static str>,
    ) -> Vec<u32> {
        let mut seen = Vec::new();
        index.first_match(path, header, |route| {
            seen.push(route);
            false
        });
        seen
    }

    #[test]
    fn routes_of_one_key_are_split_by_the_header_most_of_them_require() {
        // Ten routes on `/`: 0–7 need `x-tenant` (header 0) = t0…t7, 8 needs
        // nothing, 9 needs header 1 only.
        let slash = PathMatch::Prefix("/".into());
        let tenants: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        let mut keys: Vec<RouteKeys<'_>> = tenants
            .iter()
            .map(|t| RouteKeys {
                path: &slash,
                exact_headers: vec![(0, t.as_str())],
            })
            .collect();
        keys.push(RouteKeys {
            path: &slash,
            exact_headers: Vec::new(),
        });
        keys.push(RouteKeys {
            path: &slash,
            exact_headers: vec![(1, "v2")],
        });
        let index = PathIndex::new(keys);
        let tenant = |value: &'static str| move |h: u32| (h == 0).then_some(value);
        assert_eq!(candidates_with(&index, "/x", tenant("t5")), [5, 8, 9]);
        assert_eq!(candidates_with(&index, "/x", tenant("t9")), [8, 9]);
        assert_eq!(candidates_with(&index, "/x", no_header), [8, 9]);
        assert_eq!(
            index.first_match("/x", tenant("t3"), |r| r == 3 || r == 8),
            Some(3)
        );
    }

    #[test]
    fn a_few_routes_or_a_header_few_require_are_not_split() {
        let slash = PathMatch::Prefix("/".into());
        let few: Vec<RouteKeys<'_>> = (0..SPLIT_MIN - 1)
            .map(|_| RouteKeys {
                path: &slash,
                exact_headers: vec![(0, "a")],
            })
            .collect();
        let all: Vec<u32> = (0..SPLIT_MIN as u32 - 1).collect();
        assert_eq!(candidates(&PathIndex::new(few), "/"), all);
        // Twelve routes, five needing the header: under half, no split.
        let mostly_plain: Vec<RouteKeys<'_>> = (0..12)
            .map(|i| RouteKeys {
                path: &slash,
                exact_headers: if i < 5 { vec![(0, "a")] } else { Vec::new() },
            })
            .collect();
        assert_eq!(candidates(&PathIndex::new(mostly_plain), "/").len(), 12);
    }

    #[test]
    fn candidates_are_the_routes_that_could_match_in_route_order() {
        let paths = [
            PathMatch::Prefix("/api/".into()),             // 0
            PathMatch::Exact("/api/users".into()),         // 1
            PathMatch::Regex("/v[0-9]+/.*".into()),        // 2
            PathMatch::Prefix("/API/USERS".into()),        // 3: lower-cased key
            PathMatch::Prefix("/other".into()),            // 4
            PathMatch::PathSeparatedPrefix("/api".into()), // 5
            PathMatch::Prefix("".into()),                  // 6
            PathMatch::Exact("/api/users".into()),         // 7
        ];
        let index = index(&paths);
        assert_eq!(candidates(&index, "/api/users"), [0, 1, 2, 3, 5, 6, 7]);
        assert_eq!(candidates(&index, "/other/x"), [2, 4, 6]);
        assert_eq!(candidates(&index, "/"), [2, 6]);
        assert_eq!(candidates(&index, ""), [2, 6]);
    }

    #[test]
    fn the_first_candidate_that_matches_wins() {
        let paths = [
            PathMatch::Prefix("/a".into()),
            PathMatch::Prefix("/".into()),
            PathMatch::Exact("/a/b".into()),
        ];
        let index = index(&paths);
        assert_eq!(index.first_match("/a/b", no_header, |r| r != 0), Some(1));
        assert_eq!(index.first_match("/a/b", no_header, |r| r == 2), Some(2));
        assert_eq!(index.first_match("/a/b", no_header, |_| false), None);
    }

    #[test]
    fn more_lists_than_a_batch_still_merge_in_route_order() {
        // Each prefix of a long path is a route, in reverse order, so the
        // lists arrive longest-last while the lowest route is the longest.
        let path = "/abcdefghijklmnopqrstuvwxyz0123456789";
        let paths: Vec<PathMatch> = (1..=path.len())
            .rev()
            .map(|len| PathMatch::Prefix(path[..len].into()))
            .collect();
        let index = index(&paths);
        let all = candidates(&index, path);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..path.len() as u32).collect::<Vec<_>>());
        for wanted in [0, 7, 20, 35] {
            assert_eq!(
                index.first_match(path, no_header, |r| r >= wanted),
                Some(wanted)
            );
        }
    }
}
