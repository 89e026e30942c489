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
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<Digest, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _k: &Digest, v: &Entry, _at: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The cache.
pub struct VerdictCache {
    inner: moka::sync::Cache<Digest, Entry>,
}

impl VerdictCache {
    /// A cache of at most `max_entries` verdicts (weighted: one unit per KiB of principal).
    pub fn new(max_entries: u64) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .weigher(|_k, e: &Entry| e.principal.cache_weight())
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// The cached principal for this digest, if any.
    pub fn get(&self, d: &Digest) -> Option<Arc<Principal>> {
        self.inner.get(d).map(|e| e.principal)
    }

    /// Remember a verdict for `ttl` (nothing is stored for a zero TTL).
    pub fn insert(&self, d: Digest, principal: Arc<Principal>, ttl: Duration) {
        if !ttl.is_zero() {
            self.inner.insert(d, Entry { principal, ttl });
        }
    }

    /// Approximate entry count.
    pub fn len(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
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
        Arc::new(Principal {
            km_id: 0,
            km_name: http::HeaderValue::from_static("km"),
            subject: None,
            client_id: None,
            scopes_header: http::HeaderValue::from_str(&scopes[0]).unwrap(),
            scopes,
            expires_at: None,
            token_kind: None,
        })
    }

    #[test]
    fn bounded_by_weight_and_keyed_by_full_digest() {
        let cache = VerdictCache::new(8);
        let small = principal(10);
        assert_eq!(small.cache_weight(), 1);
        for i in 0..50 {
            cache.insert(
                digest(&format!("token-{i}")),
                small.clone(),
                Duration::from_secs(60),
            );
        }
        assert!(cache.len() <= 8, "{}", cache.len());
        // A principal heavier than the whole cache is not kept.
        let heavy = principal(20 * 1024);
        assert!(heavy.cache_weight() > 8);
        cache.insert(digest("heavy"), heavy, Duration::from_secs(60));
        cache.inner.run_pending_tasks();
        assert!(cache.get(&digest("heavy")).is_none());
        // Zero TTL: nothing stored.
        cache.insert(digest("zero"), small, Duration::ZERO);
        assert!(cache.get(&digest("zero")).is_none());
        assert_ne!(digest("a"), digest("b"));
    }
}
