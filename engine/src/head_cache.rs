//! The committer's cache of ad heads, bounded in bytes as well as in count.
//!
//! A head holds the ad's whole current data (so an update applies without a read), and an
//! ad can be tens of kilobytes (a 10,000-character description, 50 tags). A count limit
//! alone would let a caller who writes large ads grow the cache to gigabytes; this one
//! keeps an estimate of each entry's heap size and is emptied when either limit would be
//! passed — every entry can be read back from the journal, so dropping is always safe.

use std::collections::HashMap;

use crate::ad::AdKey;

/// What an entry costs, in bytes: its heap data plus a fixed overhead per entry.
pub(crate) trait Weigh {
    /// Approximate heap bytes owned by the value.
    fn heap_bytes(&self) -> usize;
}

/// The bookkeeping of a map entry (hash slot, key and value headers), roughly.
const ENTRY_OVERHEAD: usize = 160;

/// A map of heads with a byte and a count budget.
#[derive(Debug)]
pub(crate) struct HeadCache<V> {
    map: HashMap<AdKey, (V, usize)>,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
}

impl<V: Weigh> HeadCache<V> {
    /// An empty cache holding at most `max_entries` heads and `max_bytes` bytes.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        HeadCache {
            map: HashMap::new(),
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    fn weight(key: &AdKey, value: &V) -> usize {
        ENTRY_OVERHEAD + key.publisher_id.len() + key.ad_id.len() + value.heap_bytes()
    }

    /// The cached head of `key`.
    pub(crate) fn get(&self, key: &AdKey) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    /// Whether `key` is cached.
    pub(crate) fn contains_key(&self, key: &AdKey) -> bool {
        self.map.contains_key(key)
    }

    /// Caches `value` for `key`, first emptying the cache if it would pass a limit.
    pub(crate) fn insert(&mut self, key: AdKey, value: V) {
        let weight = Self::weight(&key, &value);
        if let Some((_, old)) = self.map.remove(&key) {
            self.bytes -= old;
        }
        if self.map.len() + 1 > self.max_entries || self.bytes + weight > self.max_bytes {
            self.clear();
        }
        if weight <= self.max_bytes {
            self.bytes += weight;
            self.map.insert(key, (value, weight));
        }
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &AdKey) {
        if let Some((_, weight)) = self.map.remove(key) {
            self.bytes -= weight;
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// The bytes currently accounted.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The number of heads cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);

    impl Weigh for Blob {
        fn heap_bytes(&self) -> usize {
            self.0
        }
    }

    fn key(i: usize) -> AdKey {
        AdKey::new("acme", format!("{i:026}"))
    }

    #[test]
    fn large_heads_cannot_grow_it_past_its_byte_budget() {
        let mut cache = HeadCache::new(1_000_000, 1_000_000);
        for i in 0..10_000 {
            cache.insert(key(i), Blob(20_000));
            assert!(cache.bytes() <= 1_000_000, "{} bytes", cache.bytes());
        }
        assert!(cache.len() < 50, "{} heads of 20 kB in 1 MB", cache.len());
    }

    #[test]
    fn counts_and_replacements_are_accounted() {
        let mut cache = HeadCache::new(3, usize::MAX);
        for i in 0..3 {
            cache.insert(key(i), Blob(10));
        }
        cache.insert(key(1), Blob(500));
        assert_eq!(cache.len(), 3, "a replacement does not count twice");
        let before = cache.bytes();
        cache.remove(&key(1));
        assert_eq!(before - cache.bytes(), ENTRY_OVERHEAD + 4 + 26 + 500);
        cache.insert(key(7), Blob(1));
        cache.insert(key(8), Blob(1));
        assert!(cache.len() <= 3);
        assert!(cache.get(&key(8)).is_some());
        // A head larger than the whole budget is simply not cached.
        let mut tiny = HeadCache::new(10, 100);
        tiny.insert(key(1), Blob(1_000));
        assert!(!tiny.contains_key(&key(1)));
        assert_eq!(tiny.bytes(), 0);
    }
}
