//! A key manager's JWKS: fetched in the background, swapped atomically, refreshed on unknown kids
//! with single-flight, a cooldown and a memory of kids that were not found.
//!
//! Readers take an `ArcSwap` snapshot and never lock. Only a token with a kid we have never seen
//! can make a request wait on the provider, and then all such requests share one fetch (the
//! `refresh_lock`). The fetch at start does not start the cooldown, so a key rotated right after
//! start is still picked up at once; after that, unknown kids can cause at most one fetch per
//! `jwks_min_refresh_interval`, and a kid that was fetched for and not found is refused without a
//! fetch for `unknown_kid_ttl`. A failed fetch keeps the old keys. All provider I/O runs on the
//! background runtime, so a proxy worker never drives the provider connection itself.

use super::keys::KeySet;
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// What an unknown-kid lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KidLookup {
    /// The kid is now known.
    Found,
    /// Still unknown (fetched and absent, remembered, or in cooldown).
    Unknown,
    /// The provider could not be asked; the verdict is an outage, not the caller's fault.
    Unavailable(String),
}

#[derive(Debug, Default)]
struct FetchState {
    last_on_demand: Option<Instant>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

/// Readiness of one JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksStatus {
    /// Keys loaded (0 = not ready).
    pub keys: usize,
    /// Unix time of the last successful fetch.
    pub last_success: Option<u64>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

/// The store.
pub struct JwksStore {
    key_manager: String,
    url: ArcSwapOption<url::Url>,
    http: reqwest::Client,
    timeout: Duration,
    bg: tokio::runtime::Handle,
    keys: ArcSwapOption<KeySet>,
    refresh_lock: tokio::sync::Mutex<()>,
    state: Mutex<FetchState>,
    unknown_kids: moka::sync::Cache<String, ()>,
    min_refresh: Duration,
    metrics: Arc<Metrics>,
}

impl JwksStore {
    /// A store with no keys yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_manager: &str,
        url: Option<url::Url>,
        http: reqwest::Client,
        timeout: Duration,
        bg: tokio::runtime::Handle,
        min_refresh: Duration,
        unknown_kid_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            key_manager: key_manager.to_string(),
            url: ArcSwapOption::from(url.map(Arc::new)),
            http,
            timeout,
            bg,
            keys: ArcSwapOption::empty(),
            refresh_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new(FetchState::default()),
            unknown_kids: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(unknown_kid_ttl)
                .build(),
            min_refresh,
            metrics,
        }
    }

    /// Set the JWKS URL (from discovery).
    pub fn set_url(&self, url: url::Url) {
        self.url.store(Some(Arc::new(url)));
    }

    /// The current keys; `None` until the first successful fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Readiness facts.
    pub fn status(&self) -> JwksStatus {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        JwksStatus {
            keys: self.current().map(|k| k.len()).unwrap_or(0),
            last_success: st
                .last_success
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            last_error: st.last_error.clone(),
        }
    }

    /// Fetch now and swap in the result. `reason` labels the metric.
    pub async fn fetch(&self, reason: &'static str) -> Result<usize, String> {
        let http = self.http.clone();
        let url = self.url.load_full();
        let timeout = self.timeout;
        let result = match url {
            Some(url) => self
                .bg
                .spawn(async move { download(http, (*url).clone(), timeout).await })
                .await
                .unwrap_or_else(|e| Err(format!("fetch task failed: {e}"))),
            None => Err("JWKS URL not discovered yet".to_string()),
        };
        let parsed = result.and_then(|bytes| KeySet::from_jwks_json(&bytes));
        let km = self.key_manager.as_str();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match parsed {
            Ok((set, skipped)) => {
                for s in skipped {
                    log::warn!("key manager {km}: JWKS key skipped: {s}");
                }
                let n = set.len();
                self.keys.store(Some(Arc::new(set)));
                let now = SystemTime::now();
                st.last_success = Some(now);
                st.last_error = None;
                self.metrics
                    .jwks_fetches
                    .with_label_values(&[km, reason, "ok"])
                    .inc();
                self.metrics
                    .jwks_keys
                    .with_label_values(&[km])
                    .set(n as i64);
                self.metrics
                    .key_manager_ready
                    .with_label_values(&[km])
                    .set(1);
                let secs = now
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.metrics
                    .jwks_last_success
                    .with_label_values(&[km])
                    .set(secs as i64);
                log::info!("key manager {km}: loaded {n} key(s) from JWKS ({reason})");
                Ok(n)
            }
            Err(e) => {
                log::warn!("key manager {km}: JWKS fetch failed ({reason}): {e}");
                st.last_error = Some(e.clone());
                self.metrics
                    .jwks_fetches
                    .with_label_values(&[km, reason, "error"])
                    .inc();
                Err(e)
            }
        }
    }

    /// A token names `kid`, which the current set lacks. Fetch at most once for all waiters.
    pub async fn refresh_for_kid(&self, kid: &str) -> KidLookup {
        if self.unknown_kids.contains_key(kid) {
            return KidLookup::Unknown;
        }
        let _guard = self.refresh_lock.lock().await;
        // Whoever held the lock before us may have fetched already.
        if self.current().is_some_and(|k| k.has_kid(kid)) {
            return KidLookup::Found;
        }
        if self.unknown_kids.contains_key(kid) {
            return KidLookup::Unknown;
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st
                .last_on_demand
                .is_some_and(|t| t.elapsed() < self.min_refresh)
            {
                self.metrics
                    .jwks_cooldown_hits
                    .with_label_values(&[&self.key_manager])
                    .inc();
                // Not remembered as unknown: a real new key must be picked up after the cooldown.
                return KidLookup::Unknown;
            }
            st.last_on_demand = Some(Instant::now());
        }
        match self.fetch("unknown_kid").await {
            Ok(_) if self.current().is_some_and(|k| k.has_kid(kid)) => KidLookup::Found,
            Ok(_) => {
                self.unknown_kids.insert(kid.to_string(), ());
                KidLookup::Unknown
            }
            Err(e) => KidLookup::Unavailable(e),
        }
    }

    /// The background loop: fetch at start with backoff (1 s doubling to 30 s) until it works,
    /// then every `interval`; failures keep the old keys and retry with backoff. It ends when the
    /// store is dropped (its key manager was removed by a reload).
    pub async fn run_refresher(
        store: std::sync::Weak<Self>,
        interval: Duration,
        initial_backoff: Duration,
    ) {
        let max_backoff = Duration::from_secs(30);
        let mut backoff = initial_backoff;
        let mut reason = "start";
        loop {
            let Some(this) = store.upgrade() else { return };
            let result = this.fetch(reason).await;
            let has_keys = this.current().is_some();
            drop(this);
            match result {
                Ok(_) => {
                    backoff = initial_backoff;
                    reason = "interval";
                    tokio::time::sleep(interval).await;
                }
                Err(_) => {
                    tokio::time::sleep(backoff.min(interval)).await;
                    backoff = (backoff * 2).min(max_backoff);
                    if has_keys {
                        reason = "interval";
                    }
                }
            }
        }
    }
}

async fn download(
    http: reqwest::Client,
    url: url::Url,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    super::get_capped(&http, url, timeout, MAX_JWKS_BYTES, "JWKS document").await
}
