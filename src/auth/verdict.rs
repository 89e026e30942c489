//! The JWT verdict cache: a verified token's principal, keyed by the SHA-256 of the exact token.
//!
//! Never a fast hash alone (Oathkeeper CVE-2021-32701 is what happens when a cache key can
//! collide or spans contexts): the key is a cryptographic digest of the full token, the value
//! records which key manager verified it, and the API's allowed key managers and the resource's
//! scopes are checked on every request, outside the cache. An entry lives at most
//! min(exp - now, cache_max_ttl) and never outlives its token.

use super::Principal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SHA-256 of a token.
pub type Digest = [u8; 32];

/// Digest a token (aws-lc, SHA-NI where the CPU has it).
pub fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Clone)]
struct Entry {
    principal: Arc<Principal>,
    /// From when the entry is stale (monotonic: a wall-clock step cannot stretch its life).
    until: Instant,
}

#[derive(Clone)]
struct KiB;

impl quick_cache::Weighter<Digest, Entry> for KiB {
    fn weight(&self, _k: &Digest, e: &Entry) -> u64 {
        u64::from(e.principal.cache_weight())
    }
}

/// The cache: quick_cache (sharded, S3-FIFO eviction by weight), whose hit is a hash probe under
/// a shard's shared read lock and one atomic bit, with no read log or housekeeping on the
/// reader's path (moka's hit, measured in the load comparison, cost about three times as much).
/// Entries past their life are refused on read and removed then, or evicted by weight.
pub struct VerdictCache {
    inner: quick_cache::sync::Cache<Digest, Entry, KiB>,
}

impl VerdictCache {
    /// A cache of at most `max_entries` verdicts (weighted: one unit per KiB of principal).
    pub fn new(max_entries: u64) -> Self {
        Self {
            inner: quick_cache::sync::Cache::with_weighter(
                max_entries.min(1 << 20) as usize,
                max_entries,
                KiB,
            ),
        }
    }

    /// The cached principal for this digest at `now`, if any.
    pub fn get(&self, d: &Digest, now: Instant) -> Option<Arc<Principal>> {
        let e = self.inner.get(d)?;
        if now < e.until {
            Some(e.principal)
        } else {
            // Only if it is still the stale entry: a fresh verdict stored meanwhile stays.
            self.inner.remove_if(d, |e| e.until <= now);
            None
        }
    }

    /// Remember a verdict for `ttl` from `now` (nothing is stored for a zero TTL).
    pub fn insert(&self, d: Digest, principal: Arc<Principal>, ttl: Duration, now: Instant) {
        if let Some(until) = now.checked_add(ttl).filter(|_| !ttl.is_zero()) {
            self.inner.insert(d, Entry { principal, until });
        }
    }

    /// Entry count (entries past their life included until they are read or evicted).
    pub fn len(&self) -> u64 {
        self.inner.len() as u64
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope_bytes: usize) -> Arc<Principal> {
        let scopes = vec!["s".repeat(scope_bytes)];
        let who = crate::auth::Identity {
            km_name: "km",
            ..Default::default()
        };
        Arc::new(Principal::new(0, who, &scopes, None, None).unwrap())
    }

    #[test]
    fn bounded_by_weight_and_keyed_by_full_digest() {
        let cache = VerdictCache::new(8);
        let small = principal(10);
        let minute = Duration::from_secs(60);
        let now = Instant::now();
        assert_eq!(small.cache_weight(), 1);
        for i in 0..50 {
            cache.insert(digest(&format!("token-{i}")), small.clone(), minute, now);
        }
        assert!(cache.len() <= 8, "{}", cache.len());
        // A principal heavier than the whole cache is not kept.
        let heavy = principal(20 * 1024);
        assert!(heavy.cache_weight() > 8);
        cache.insert(digest("heavy"), heavy, minute, now);
        assert!(cache.get(&digest("heavy"), now).is_none());
        // Zero TTL: nothing stored.
        cache.insert(digest("zero"), small.clone(), Duration::ZERO, now);
        assert!(cache.get(&digest("zero"), now).is_none());
        assert_ne!(digest("a"), digest("b"));
    }

    #[test]
    fn an_entry_lives_exactly_its_ttl() {
        let cache = VerdictCache::new(8);
        let d = digest("t");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        cache.insert(d, principal(1), Duration::from_millis(1500), t0);
        assert!(cache.get(&d, t0).is_some());
        assert!(cache.get(&d, at(1499)).is_some());
        assert!(cache.get(&d, at(1500)).is_none());
        // Removed on that read, so an earlier clock does not bring it back.
        assert!(cache.get(&d, t0).is_none());
        assert!(cache.is_empty());
    }
}
