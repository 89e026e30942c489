//! RFC 7662 introspection with a cache that coalesces, bounds by expiry and refreshes ahead.
//!
//! The provider is slow, rate-limited and sometimes down, so:
//! - concurrent requests for the same uncached token make one call (moka `try_get_with`);
//! - an active result lives min(exp + skew - now, `cache_max_ttl`), an inactive one
//!   `negative_ttl`; outages are never cached;
//! - a hit in the last quarter of an active entry's life starts one background refresh and is
//!   served from the cache meanwhile, so a token in steady use never waits after its first
//!   request; a refresh that sees `active: false` replaces the entry (revocation takes effect);
//! - a response that says active for a token whose `exp` (+ skew) has passed is treated as
//!   inactive: no answer can revive an expired token.
//!
//! The key is the key manager plus the SHA-256 of the token; the token itself is never stored,
//! never logged. All provider I/O runs on the background runtime.

use super::verdict::Digest;
use super::Principal;
use crate::config::{ClientAuth, KeyManagerConfig};
use crate::metrics::Metrics;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest introspection response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The RFC 7662 response fields keygate reads.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct IntrospectionResponse {
    /// REQUIRED by RFC 7662.
    pub active: bool,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// The client the token was issued to (the consumer key).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Resource owner name.
    #[serde(default)]
    pub username: Option<String>,
    /// Subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// Expiry (Unix seconds).
    #[serde(default)]
    pub exp: Option<f64>,
    /// Issued at.
    #[serde(default)]
    pub iat: Option<f64>,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<f64>,
    /// Audience: a string or an array.
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    /// Issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// Token type.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Asgardeo: `APPLICATION` or `APPLICATION_USER`.
    #[serde(default)]
    pub aut: Option<String>,
}

/// A cached answer.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Active, with the caller's identity.
    Active(Arc<Principal>),
    /// Inactive (or expired, or not for our audience).
    Inactive,
}

/// Why a token was inactive, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InactiveWhy {
    /// The provider said `active: false`.
    Provider,
    /// Active but past `exp` + skew.
    Expired,
    /// Active but `nbf` in the future.
    NotYetValid,
    /// `aud` matches none of the configured audiences.
    Audience,
    /// A value we forward cannot be an HTTP header.
    BadClaims,
}

struct Entry {
    verdict: Verdict,
    created: Instant,
    ttl: Duration,
    refreshing: AtomicBool,
}

struct PerEntryTtl;

impl moka::Expiry<(u64, Digest), Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _k: &(u64, Digest),
        v: &Arc<Entry>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _k: &(u64, Digest),
        v: &Arc<Entry>,
        _at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// How an answer was obtained, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the cache.
    Cached,
    /// This request made the call.
    Called,
    /// Another request's call answered this one.
    Coalesced,
}

/// Introspection client of one key manager.
pub struct Introspector {
    km_id: u64,
    km_name: String,
    endpoint: arc_swap::ArcSwapOption<url::Url>,
    client_id: String,
    client_secret: String,
    auth: ClientAuth,
    timeout: Duration,
    skew: Duration,
    max_ttl: Duration,
    negative_ttl: Duration,
    audiences: Vec<String>,
    http: reqwest::Client,
    bg: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    /// Outcome of the latest call: 0 none yet, 1 answered, 2 failed.
    health: std::sync::atomic::AtomicU8,
    last_error: arc_swap::ArcSwapOption<String>,
}

/// The token sent by the readiness probe (any provider answers `active: false`).
pub const PROBE_TOKEN: &str = "keygate-readiness-probe";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Introspector {
    /// A client for `config`, or `None` when it has no credentials, or no endpoint and no
    /// discovery that could supply one.
    pub fn new(
        km_id: u64,
        config: &KeyManagerConfig,
        http: reqwest::Client,
        bg: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        Some(Self {
            km_id,
            km_name: config.name.clone(),
            endpoint: {
                if config.introspection_endpoint.is_none() && config.well_known_endpoint.is_none() {
                    return None;
                }
                arc_swap::ArcSwapOption::from(config.introspection_endpoint.clone().map(Arc::new))
            },
            client_id: config.client_id.clone()?,
            client_secret: config.client_secret.as_ref()?.expose().to_string(),
            auth: config.introspection_auth,
            timeout: config.http_timeout,
            skew: config.clock_skew,
            max_ttl: config.cache_max_ttl,
            negative_ttl: config.negative_ttl,
            audiences: config.audiences.clone(),
            http,
            bg,
            metrics,
            health: std::sync::atomic::AtomicU8::new(0),
            last_error: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// `Ok` when the latest call got an answer; why not otherwise.
    pub fn health(&self) -> Result<(), String> {
        match self.health.load(Ordering::Relaxed) {
            1 => Ok(()),
            0 => Err("introspection endpoint not probed yet".to_string()),
            _ => Err(format!(
                "introspection failing: {}",
                self.last_error
                    .load_full()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )),
        }
    }

    /// One call to the provider: a verdict, or an outage description.
    pub async fn call(&self, token: &str) -> Result<(Verdict, Duration), String> {
        let started = Instant::now();
        let Some(endpoint) = self.endpoint.load_full() else {
            return Err("introspection endpoint not discovered yet".to_string());
        };
        let http = self.http.clone();
        let mut req = http
            .post((*endpoint).clone())
            .timeout(self.timeout)
            .header(http::header::ACCEPT, "application/json");
        let mut form = vec![
            ("token", token.to_string()),
            ("token_type_hint", "access_token".to_string()),
        ];
        match self.auth {
            ClientAuth::Basic => req = req.basic_auth(&self.client_id, Some(&self.client_secret)),
            ClientAuth::Post => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", self.client_secret.clone()));
            }
        }
        let req = req.form(&form);
        let result = self
            .bg
            .spawn(async move { fetch(req).await })
            .await
            .unwrap_or_else(|e| Err(format!("introspection task failed: {e}")));
        self.metrics
            .introspection_duration
            .with_label_values(&[&self.km_name])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => self.health.store(1, Ordering::Relaxed),
            Err(e) => {
                self.health.store(2, Ordering::Relaxed);
                self.last_error.store(Some(Arc::new(e.clone())));
            }
        }
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .introspection_calls
                    .with_label_values(&[&self.km_name, "error"])
                    .inc();
                log::warn!("key manager {}: introspection failed: {e}", self.km_name);
                return Err(e);
            }
        };
        let verdict = self.judge(&response);
        let label = match &verdict {
            Ok(_) => "active",
            Err(_) => "inactive",
        };
        self.metrics
            .introspection_calls
            .with_label_values(&[&self.km_name, label])
            .inc();
        Ok(match verdict {
            Ok((principal, ttl)) => (Verdict::Active(Arc::new(principal)), ttl),
            Err(_) => (Verdict::Inactive, self.negative_ttl),
        })
    }

    /// Set the endpoint from discovery (the caller does so only when none was configured, so
    /// each refresh of the document can move it).
    pub fn set_discovered_endpoint(&self, url: url::Url) {
        if self.endpoint.load().as_deref() != Some(&url) {
            self.endpoint.store(Some(Arc::new(url)));
        }
    }

    /// The endpoint in use, if known yet.
    pub fn endpoint(&self) -> Option<Arc<url::Url>> {
        self.endpoint.load_full()
    }

    /// Turn a response into a principal and its cache TTL, or say why it is inactive.
    pub fn judge(&self, r: &IntrospectionResponse) -> Result<(Principal, Duration), InactiveWhy> {
        if !r.active {
            return Err(InactiveWhy::Provider);
        }
        // A refresh token is active too (WSO2 IS answers token_type "Refresh"); it is not a
        // bearer credential for APIs.
        if r.token_type.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("refresh") || t.eq_ignore_ascii_case("refresh_token")
        }) {
            return Err(InactiveWhy::Provider);
        }
        let now = now_secs();
        let skew = self.skew.as_secs();
        let exp = r.exp.map(|e| e.max(0.0) as u64);
        if exp.is_some_and(|e| e.saturating_add(skew) < now) {
            return Err(InactiveWhy::Expired);
        }
        if r.nbf
            .is_some_and(|n| n.max(0.0) as u64 > now.saturating_add(skew))
        {
            return Err(InactiveWhy::NotYetValid);
        }
        if !self.audiences.is_empty() {
            let auds: Vec<&str> = match &r.aud {
                Some(serde_json::Value::String(s)) => vec![s.as_str()],
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => vec![],
            };
            if !auds.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
                return Err(InactiveWhy::Audience);
            }
        }
        let subject = r
            .sub
            .as_deref()
            .or(r.username.as_deref())
            .filter(|s| !s.is_empty());
        // RFC 7662 and Asgardeo name the consumer key `client_id`.
        let client_id = r.client_id.as_deref().filter(|s| !s.is_empty());
        let scopes: Vec<&str> = r
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ttl = match exp {
            Some(e) => {
                Duration::from_secs(e.saturating_add(skew).saturating_sub(now)).min(self.max_ttl)
            }
            None => self.max_ttl,
        };
        // Asgardeo omits `aut` for application (client credentials) tokens and sends
        // `APPLICATION_USER` for user tokens (reference §6.2).
        let token_kind = match r.aut.as_deref() {
            Some(aut) => super::TokenKind::from_aut(aut),
            None => Some(super::TokenKind::Application),
        };
        let who = super::Identity {
            km_name: &self.km_name,
            subject,
            client_id,
        };
        let principal = Principal::new(self.km_id, who, &scopes, exp, token_kind)
            .map_err(|_| InactiveWhy::BadClaims)?;
        Ok((principal, ttl))
    }
}

async fn fetch(req: reqwest::RequestBuilder) -> Result<IntrospectionResponse, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        // 401/403 mean our own credentials are wrong: an outage of ours, not the caller's fault.
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let body = super::read_capped(resp, MAX_RESPONSE_BYTES, "introspection response").await?;
    serde_json::from_slice(&body).map_err(|e| format!("undecodable response: {e}"))
}

/// The shared introspection cache of all key managers.
pub struct IntrospectionCache {
    inner: moka::future::Cache<(u64, Digest), Arc<Entry>>,
    metrics: Arc<Metrics>,
}

impl IntrospectionCache {
    /// At most `max_entries` entries.
    pub fn new(max_entries: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .weigher(|_k, e: &Arc<Entry>| match &e.verdict {
                    Verdict::Active(p) => p.cache_weight(),
                    Verdict::Inactive => 1,
                })
                .expire_after(PerEntryTtl)
                .build(),
            metrics,
        }
    }

    /// Entries (approximate).
    pub async fn len(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.entry_count()
    }

    /// Is it empty?
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Entries per key manager, in the order of `ids` (for the metrics scrape).
    pub async fn entries_per_key_manager(&self, ids: &[u64]) -> Vec<u64> {
        self.inner.run_pending_tasks().await;
        let mut counts = vec![0u64; ids.len()];
        for (k, _) in self.inner.iter() {
            if let Some(i) = ids.iter().position(|&id| id == k.0) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// The verdict for `token` from `client`'s key manager: cached, coalesced or called.
    /// `Err` is an outage.
    pub async fn lookup(
        self: &Arc<Self>,
        client: &Arc<Introspector>,
        token: &str,
        digest: Digest,
    ) -> Result<(Verdict, Source), String> {
        let key = (client.km_id, digest);
        let km = client.km_name.as_str();
        if let Some(entry) = self.inner.get(&key).await {
            if let Verdict::Active(p) = &entry.verdict {
                // Never serve past exp + skew, whatever the entry's remaining life.
                if p.expires_at
                    .is_some_and(|e| e.saturating_add(client.skew.as_secs()) < now_secs())
                {
                    self.inner.invalidate(&key).await;
                    return Ok((Verdict::Inactive, Source::Cached));
                }
                self.maybe_refresh(client, &entry, key, token);
            }
            self.metrics
                .introspection_cache
                .with_label_values(&[km, "hit"])
                .inc();
            return Ok((entry.verdict.clone(), Source::Cached));
        }
        let ran = AtomicBool::new(false);
        let result = self
            .inner
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                let (verdict, ttl) = client.call(token).await?;
                Ok::<_, String>(Arc::new(Entry {
                    verdict,
                    created: Instant::now(),
                    ttl,
                    refreshing: AtomicBool::new(false),
                }))
            })
            .await;
        let source = if ran.load(Ordering::Relaxed) {
            Source::Called
        } else {
            Source::Coalesced
        };
        let label = match source {
            Source::Coalesced => "coalesced",
            _ => "miss",
        };
        self.metrics
            .introspection_cache
            .with_label_values(&[km, label])
            .inc();
        match result {
            Ok(entry) => Ok((entry.verdict.clone(), source)),
            Err(e) => Err((*e).clone()),
        }
    }

    /// In the last quarter of an active entry's life, refresh it once in the background.
    fn maybe_refresh(
        self: &Arc<Self>,
        client: &Arc<Introspector>,
        entry: &Arc<Entry>,
        key: (u64, Digest),
        token: &str,
    ) {
        let age = entry.created.elapsed();
        if age * 4 < entry.ttl * 3 || entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (cache, client, entry) = (self.clone(), client.clone(), entry.clone());
        let token = token.to_string();
        client.bg.clone().spawn(async move {
            let km = client.km_name.clone();
            match client.call(&token).await {
                Ok((verdict, ttl)) => {
                    let fresh = Arc::new(Entry {
                        verdict,
                        created: Instant::now(),
                        ttl,
                        refreshing: AtomicBool::new(false),
                    });
                    cache.inner.insert(key, fresh).await;
                    cache
                        .metrics
                        .introspection_refreshes
                        .with_label_values(&[&km, "ok"])
                        .inc();
                }
                Err(_) => {
                    // Keep serving the cached answer until it expires; a later hit may retry.
                    entry.refreshing.store(false, Ordering::Release);
                    cache
                        .metrics
                        .introspection_refreshes
                        .with_label_values(&[&km, "error"])
                        .inc();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Certificates, KeyManagerConfig, Secret};

    fn introspector(audiences: &[&str]) -> (tokio::runtime::Runtime, Introspector) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut c =
            KeyManagerConfig::self_validating("km", "https://i", Certificates::Pem(String::new()));
        c.introspection_endpoint = Some("https://i/introspect".parse().unwrap());
        c.client_id = Some("id".into());
        c.client_secret = Some(Secret::new("s"));
        c.clock_skew = Duration::ZERO;
        c.audiences = audiences.iter().map(|s| s.to_string()).collect();
        let i = Introspector::new(
            7,
            &c,
            reqwest::Client::new(),
            rt.handle().clone(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        (rt, i)
    }

    fn active(extra: serde_json::Value) -> IntrospectionResponse {
        let mut v = serde_json::json!({"active": true, "scope": "a b", "client_id": "c", "exp": now_secs() + 60});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn judge_refuses_refresh_expired_and_foreign_audience() {
        let (_rt, i) = introspector(&[]);
        let (p, ttl) = i.judge(&active(serde_json::json!({}))).unwrap();
        assert_eq!(
            (p.scopes().collect::<Vec<_>>(), p.km_id),
            (vec!["a", "b"], 7)
        );
        assert!(ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50));
        assert_eq!(
            i.judge(&active(serde_json::json!({"token_type": "Refresh"})))
                .unwrap_err(),
            InactiveWhy::Provider
        );
        assert!(i
            .judge(&active(serde_json::json!({"token_type": "Bearer"})))
            .is_ok());
        assert_eq!(
            i.judge(&active(serde_json::json!({"exp": now_secs() - 1})))
                .unwrap_err(),
            InactiveWhy::Expired
        );
        assert_eq!(
            i.judge(&active(serde_json::json!({"nbf": now_secs() + 60})))
                .unwrap_err(),
            InactiveWhy::NotYetValid
        );
        assert_eq!(
            i.judge(&active(serde_json::json!({"active": false})))
                .unwrap_err(),
            InactiveWhy::Provider
        );
        let (_rt2, strict) = introspector(&["api"]);
        assert_eq!(
            strict
                .judge(&active(serde_json::json!({"aud": "other"})))
                .unwrap_err(),
            InactiveWhy::Audience
        );
        assert!(strict
            .judge(&active(serde_json::json!({"aud": ["x", "api"]})))
            .is_ok());
    }
}
