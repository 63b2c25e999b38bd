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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::PathMatch;

/// Route numbers, each list in ascending order.
type Routes = Box<[u32]>;

#[derive(Debug, Default)]
pub(super) struct PathIndex {
    /// `safe_regex` routes: candidates for every path.
    always: Routes,
    exact: KeyMap,
    prefixes: KeyMap,
    /// `prefix_lengths[n]`: some prefix is `n` bytes long.
    prefix_lengths: Box<[bool]>,
}

/// A lower-cased key and the routes filed under it.
type Filed = (Box<[u8]>, Routes);

/// Keys and their routes, by the keys' hash.
type KeyMap = HashMap<u64, Box<[Filed]>, BuildHasherDefault<KeyHasher>>;

impl PathIndex {
    /// Indexes routes by their path rule, `paths[i]` being route `i`'s.
    pub(super) fn new<'a>(paths: impl IntoIterator<Item = &'a PathMatch>) -> Self {
        let mut always = Vec::new();
        let mut exact: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        let mut prefixes: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        for (i, path) in paths.into_iter().enumerate() {
            let Ok(i) = u32::try_from(i) else {
                // Beyond four billion routes a route can only be found by scanning.
                break;
            };
            match path {
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
            always: always.into(),
            exact: key_map(exact),
            prefixes: key_map(prefixes),
            prefix_lengths: prefix_lengths.into(),
        }
    }

    /// The first route, in route order, that could match `path` and passes
    /// `matches`. `matches` is called on candidates only and, unless more than
    /// 16 lists of them (16 prefixes of the path) are filed, in route order.
    pub(super) fn first_match(&self, path: &str, matches: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut search = Search::new(matches);
        search.push(&self.always);
        let bytes = path.as_bytes();
        let mut hash = KeyHash::new();
        for (len, wanted) in self.prefix_lengths.iter().enumerate() {
            if *wanted && let Some(routes) = find(&self.prefixes, hash, &bytes[..len]) {
                search.push(routes);
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
                search.push(routes);
            }
        }
        search.finish()
    }
}

fn lower(key: &str) -> Vec<u8> {
    key.as_bytes().to_ascii_lowercase()
}

fn key_map(keys: HashMap<Vec<u8>, Vec<u32>>) -> KeyMap {
    let mut map: HashMap<u64, Vec<Filed>> = HashMap::new();
    for (key, routes) in keys {
        let mut hash = KeyHash::new();
        for byte in &key {
            hash.push(*byte);
        }
        map.entry(hash.finish())
            .or_default()
            .push((key.into(), routes.into()));
    }
    map.into_iter()
        .map(|(hash, keys)| (hash, keys.into()))
        .collect()
}

/// The routes filed under `key` (compared ignoring ASCII case), whose running
/// hash is `hash`.
fn find<'a>(map: &'a KeyMap, hash: KeyHash, key: &[u8]) -> Option<&'a [u32]> {
    map.get(&hash.finish())?
        .iter()
        .find(|(filed, _)| filed.eq_ignore_ascii_case(key))
        .map(|(_, routes)| &**routes)
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
        PathIndex::new(paths)
    }

    /// Every candidate offered for `path`, in the order offered.
    fn candidates(index: &PathIndex, path: &str) -> Vec<u32> {
        let mut seen = Vec::new();
        index.first_match(path, |route| {
            seen.push(route);
            false
        });
        seen
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
        assert_eq!(index.first_match("/a/b", |r| r != 0), Some(1));
        assert_eq!(index.first_match("/a/b", |r| r == 2), Some(2));
        assert_eq!(index.first_match("/a/b", |_| false), None);
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
            assert_eq!(index.first_match(path, |r| r >= wanted), Some(wanted));
        }
    }
}
