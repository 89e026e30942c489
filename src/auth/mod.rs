//! Authentication: a bearer token in, a [`Principal`] out (or an [`AuthError`]).
//!
//! ```text
//! token ─ digest ─▶ verdict cache hit? ─▶ key manager allowed for the API? ─▶ Principal
//!          │ miss
//!          ▼
//!        classify (three segments, alg not none/HMAC) ─▶ unverified iss ─▶ key manager
//!          ─▶ allowed for the API? ─▶ keys present? (else 503) ─▶ kid known? (else one shared
//!          refresh) ─▶ verify (alg pinned by the key; exp, nbf, iss, aud, skew) ─▶ cache
//! ```
//!
//! A JWT whose issuer matches no key manager is refused and never sent anywhere: forwarding it to
//! a provider that did not issue it would leak it.

pub mod bearer;
pub mod discovery;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod key_manager;
pub mod keys;
pub mod verdict;

use crate::config::{Config, ValidationMethod};
use crate::error::{AuthError, InvalidReason};
use crate::metrics::Metrics;
use introspection::{IntrospectionCache, Source, Verdict};
use jwks::KidLookup;
use jwt::{KeyChoice, TokenShape};
use key_manager::{KeyManager, KeySource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use verdict::VerdictCache;

/// What a token was issued for (Asgardeo's `aut`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Issued to an application (client credentials): `aut: APPLICATION`.
    Application,
    /// Issued to a user through an application: `aut: APPLICATION_USER`.
    ApplicationUser,
}

impl TokenKind {
    /// From an `aut` value.
    pub fn from_aut(aut: &str) -> Option<Self> {
        match aut {
            "APPLICATION" => Some(Self::Application),
            "APPLICATION_USER" => Some(Self::ApplicationUser),
            _ => None,
        }
    }
}

/// Who the caller is, as established by a key manager.
///
/// All its texts (key manager name, subject, client id, scopes) live in one shared buffer, and
/// the header values are slices of it: a cached principal is read on every request, and one
/// allocation with one reference count costs one cache miss where separate strings cost one each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Id of the key manager that validated the token (stable across reloads while the key
    /// manager's configuration is unchanged; a changed key manager gets a new id).
    pub km_id: u64,
    /// `exp` (Unix seconds), if the token has one.
    pub expires_at: Option<u64>,
    /// Application or user token, when the key manager says.
    pub token_kind: Option<TokenKind>,
    km_name: http::HeaderValue,
    subject: Option<http::HeaderValue>,
    client_id: Option<http::HeaderValue>,
    scopes_header: http::HeaderValue,
    /// The scopes joined by `\n`, which no scope can contain (header values refuse it), so an
    /// array element holding a space stays one scope.
    scope_list: bytes::Bytes,
}

/// The texts of a [`Principal`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity<'a> {
    /// The validating key manager's name.
    pub km_name: &'a str,
    /// `sub`.
    pub subject: Option<&'a str>,
    /// Consumer key (client id).
    pub client_id: Option<&'a str>,
}

impl Principal {
    /// Build; `Err` when a text cannot be an HTTP header value (control characters).
    pub fn new<S: AsRef<str>>(
        km_id: u64,
        who: Identity<'_>,
        scopes: &[S],
        expires_at: Option<u64>,
        token_kind: Option<TokenKind>,
    ) -> Result<Self, InvalidReason> {
        let scope_bytes: usize = scopes.iter().map(|s| s.as_ref().len() + 1).sum();
        let mut buf = Vec::with_capacity(
            who.km_name.len()
                + who.subject.map_or(0, str::len)
                + who.client_id.map_or(0, str::len)
                + 2 * scope_bytes,
        );
        let mut push = |parts: &mut dyn Iterator<Item = &str>, sep: u8| {
            let start = buf.len();
            for (i, p) in parts.enumerate() {
                if i > 0 {
                    buf.push(sep);
                }
                buf.extend_from_slice(p.as_bytes());
            }
            start..buf.len()
        };
        let km = push(&mut std::iter::once(who.km_name), b' ');
        let sub = who.subject.map(|s| push(&mut std::iter::once(s), b' '));
        let cid = who.client_id.map(|s| push(&mut std::iter::once(s), b' '));
        let header = push(&mut scopes.iter().map(|s| s.as_ref()), b' ');
        let list = push(&mut scopes.iter().map(|s| s.as_ref()), b'\n');
        let buf = bytes::Bytes::from(buf);
        let value = |r: std::ops::Range<usize>| {
            http::HeaderValue::from_maybe_shared(buf.slice(r)).map_err(|_| InvalidReason::BadClaims)
        };
        Ok(Self {
            km_id,
            expires_at,
            token_kind,
            km_name: value(km)?,
            subject: sub.map(value).transpose()?,
            client_id: cid.map(value).transpose()?,
            scopes_header: value(header)?,
            scope_list: buf.slice(list),
        })
    }

    /// The validating key manager's name, ready for the upstream header.
    pub fn km_name(&self) -> &http::HeaderValue {
        &self.km_name
    }

    /// `sub`, ready for the upstream header.
    pub fn subject(&self) -> Option<&http::HeaderValue> {
        self.subject.as_ref()
    }

    /// The consumer key (client id), ready for the upstream header.
    pub fn client_id(&self) -> Option<&http::HeaderValue> {
        self.client_id.as_ref()
    }

    /// Granted scopes, space separated, ready for the upstream header.
    pub fn scopes_header(&self) -> &http::HeaderValue {
        &self.scopes_header
    }

    /// Granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.scope_list
            .split(|&b| b == b'\n')
            .filter(|s| !s.is_empty())
            .map(|s| std::str::from_utf8(s).unwrap_or(""))
    }

    /// Cache weight: one unit per started KiB of what it holds, so a bound in entries is also a
    /// bound in memory (about `max_entries` KiB at most).
    pub fn cache_weight(&self) -> u32 {
        // The struct, its shared buffer's header, and the buffer (scope_list ends it).
        let bytes = std::mem::size_of::<Self>()
            + 32
            + self.scope_list.len() * 2
            + self.km_name.len()
            + self.subject.as_ref().map_or(0, |v| v.len())
            + self.client_id.as_ref().map_or(0, |v| v.len());
        (bytes / 1024 + 1) as u32
    }

    /// Does the principal hold at least one of `required`?
    pub fn has_any_scope(&self, required: &[String]) -> bool {
        !self.scope_list.is_empty()
            && required.iter().any(|r| {
                self.scope_list
                    .split(|&b| b == b'\n')
                    .any(|s| s == r.as_bytes())
            })
    }
}

/// How a verdict was reached, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationPath {
    /// From the verdict cache.
    Cached,
    /// Signature verified now.
    Verified,
    /// From the introspection cache.
    IntrospectionCached,
    /// Introspected now (or answered by a concurrent request's call).
    Introspected,
}

impl ValidationPath {
    /// Metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Verified => "verified",
            Self::IntrospectionCached => "introspection_cached",
            Self::Introspected => "introspected",
        }
    }
}

/// Which key managers an API accepts, and in which order opaque tokens are offered to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmPolicy {
    /// `allowed[i]`: may key manager `i` validate tokens for the API?
    pub allowed: Box<[bool]>,
    /// Allowed key managers in the API's declared order (`all` = config order).
    pub order: Box<[usize]>,
}

impl KmPolicy {
    /// Every key manager, in config order.
    pub fn all(n: usize) -> Self {
        Self {
            allowed: vec![true; n].into(),
            order: (0..n).collect(),
        }
    }

    fn allows(&self, km: usize) -> bool {
        self.allowed.get(km).copied().unwrap_or(false)
    }
}

/// Read a provider's response body, refusing more than `max` bytes (whatever Content-Length
/// claims): JWKS, discovery and introspection answers are bounded.
/// GET a JSON document of at most `max` bytes (`what` names it in errors; no URL is in them).
pub(crate) async fn get_capped(
    http: &reqwest::Client,
    url: url::Url,
    timeout: Duration,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let resp = http
        .get(url)
        .timeout(timeout)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    read_capped(resp, max, what).await
}

pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n as usize > max) {
        return Err(format!("{what} too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading body: {e}"))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("{what} too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Initial delay between start-up fetch attempts (doubles up to 30 s).
pub const STARTUP_BACKOFF: Duration = Duration::from_secs(1);

/// All key managers and the verdict cache.
pub struct Authenticator {
    kms: Vec<Arc<KeyManager>>,
    by_issuer: HashMap<String, usize>,
    verdicts: Arc<VerdictCache>,
    introspections: Arc<IntrospectionCache>,
    metrics: Arc<Metrics>,
    bg: tokio::runtime::Handle,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Build key managers from the config. Nothing is fetched until
    /// [`Authenticator::start_refreshers`].
    pub fn new(
        config: &Config,
        bg: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Self::rebuild(config, bg, metrics, None)
    }

    /// Build for `config`, keeping from `previous` every key manager whose configuration did not
    /// change (with its keys, refreshers and cached verdicts) and the caches themselves. Entries
    /// of key managers that changed or went away are unreachable: they belong to ids this
    /// authenticator does not know.
    pub fn rebuild(
        config: &Config,
        bg: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        previous: Option<&Authenticator>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("keygate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut kms = Vec::new();
        let mut by_issuer = HashMap::new();
        for (i, kc) in config.key_managers.iter().enumerate() {
            if !kc.issuer.is_empty() {
                by_issuer.insert(kc.issuer.clone(), i);
            }
            let reused = previous.and_then(|p| p.kms.iter().find(|k| k.config == *kc).cloned());
            let km = match reused {
                Some(k) => k,
                None => Arc::new(KeyManager::new(kc.clone(), &http, &bg, &metrics)?),
            };
            kms.push(km);
        }
        let (verdicts, introspections) = match previous {
            Some(p) => (p.verdicts.clone(), p.introspections.clone()),
            None => (
                Arc::new(VerdictCache::new(config.verdict_cache_max_entries)),
                Arc::new(IntrospectionCache::new(
                    config.introspection_cache_max_entries,
                    metrics.clone(),
                )),
            ),
        };
        Ok(Self {
            kms,
            by_issuer,
            verdicts,
            introspections,
            metrics,
            bg,
        })
    }

    /// Spawn the discovery and JWKS refreshers on the background runtime, once per key manager
    /// (a key manager kept across a reload keeps its refreshers). A key manager with a discovery
    /// document fetches it first (backoff 1 s doubling to 30 s), then its keys. The tasks hold
    /// weak references: they end when the key manager is dropped after a reload removed it.
    pub fn start_refreshers(&self) {
        for km in &self.kms {
            if km
                .refreshers_started
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                continue;
            }
            let weak = Arc::downgrade(km);
            self.bg.spawn(async move {
                let Some(mut km) = weak.upgrade() else { return };
                if km.config.well_known_endpoint.is_some() {
                    let mut backoff = STARTUP_BACKOFF;
                    while km.discover().await.is_err() {
                        drop(km);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        let Some(again) = weak.upgrade() else { return };
                        km = again;
                    }
                    // Refresh the document with the keys' interval, keeping the last good one.
                    let weak2 = weak.clone();
                    let interval = km.config.jwks_refresh_interval;
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(interval).await;
                            let Some(km) = weak2.upgrade() else { return };
                            let _ = km.discover().await;
                        }
                    });
                }
                if km.config.validation == ValidationMethod::Introspect {
                    // Readiness: probe until the endpoint answers; later calls keep it current.
                    let mut backoff = STARTUP_BACKOFF;
                    loop {
                        let ok = match &km.introspector {
                            Some(i) => i.call(introspection::PROBE_TOKEN).await.is_ok(),
                            None => true,
                        };
                        if ok {
                            break;
                        }
                        drop(km);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        let Some(again) = weak.upgrade() else { return };
                        km = again;
                    }
                }
                if km.config.validation == ValidationMethod::Introspect {
                    // Keep readiness current without depending on user traffic: a failed call
                    // marks the key manager not ready until a later call or probe answers.
                    let weak3 = weak.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            let Some(km) = weak3.upgrade() else { return };
                            if let Some(i) = &km.introspector {
                                let _ = i.call(introspection::PROBE_TOKEN).await;
                            }
                        }
                    });
                }
                if let KeySource::Jwks(store) = &km.keys {
                    let store = Arc::downgrade(store);
                    let interval = km.config.jwks_refresh_interval;
                    drop(km);
                    jwks::JwksStore::run_refresher(store, interval, STARTUP_BACKOFF).await;
                }
            });
        }
    }

    /// The key manager whose (configured or discovered) issuer is `iss`.
    fn by_issuer(&self, iss: &str) -> Option<usize> {
        if iss.is_empty() {
            // A key manager waiting for its discovery document has an empty issuer too.
            return None;
        }
        self.by_issuer.get(iss).copied().or_else(|| {
            self.kms
                .iter()
                .position(|k| k.config.issuer.is_empty() && k.issuer().as_str() == iss)
        })
    }

    /// Key managers in config order.
    pub fn key_managers(&self) -> &[Arc<KeyManager>] {
        &self.kms
    }

    /// Entries in the verdict cache (approximate).
    pub fn cached_verdicts(&self) -> u64 {
        self.verdicts.len()
    }

    /// Entries in the introspection cache per key manager (index order).
    pub async fn cached_introspections(&self) -> Vec<u64> {
        let ids: Vec<u64> = self.kms.iter().map(|k| k.id).collect();
        self.introspections.entries_per_key_manager(&ids).await
    }

    /// Validate `token` for an API whose key manager policy is `policy`.
    pub async fn authenticate(
        &self,
        token: &str,
        policy: &KmPolicy,
    ) -> Result<(Arc<Principal>, ValidationPath), AuthError> {
        self.authenticate_digested(token, verdict::digest(token), policy)
            .await
    }

    /// [`Authenticator::authenticate`] with the token's SHA-256 already computed (the gateway
    /// also logs a prefix of it: one hash per request).
    pub async fn authenticate_digested(
        &self,
        token: &str,
        digest: verdict::Digest,
        policy: &KmPolicy,
    ) -> Result<(Arc<Principal>, ValidationPath), AuthError> {
        let started = Instant::now();
        let now = now_secs();
        if let Some((p, idx)) = self
            .verdicts
            .get(&digest, started)
            .and_then(|p| self.km_index(p.km_id).map(|i| (p, i)))
        {
            let km = &self.kms[idx];
            let skew = km.config.clock_skew.as_secs();
            if p.expires_at
                .is_none_or(|exp| exp.saturating_add(skew) >= now)
            {
                if !policy.allows(idx) {
                    return Err(self.reject(km.name(), InvalidReason::KeyManagerNotAllowed));
                }
                km.cached_timer.observe(started.elapsed().as_secs_f64());
                return Ok((p, ValidationPath::Cached));
            }
        }
        let peek = match jwt::classify(token) {
            Ok(TokenShape::Jwt(j)) => j,
            Ok(TokenShape::Opaque) => {
                // Offered to the first allowed key manager, in the API's order, that can
                // introspect and whose token handling patterns accept it. Only one is asked.
                let km = policy
                    .order
                    .iter()
                    .map(|&i| &self.kms[i])
                    .find(|km| {
                        km.introspector.is_some()
                            && (km.config.token_handling.is_empty()
                                || km.config.token_handling.iter().any(|p| p.accepts(token)))
                    })
                    .ok_or_else(|| self.reject("none", InvalidReason::Opaque))?;
                return self.introspect(km, token, digest, started).await;
            }
            Err(reason) => return Err(self.reject("none", reason)),
        };
        let Some(idx) = peek.iss.as_deref().and_then(|iss| self.by_issuer(iss)) else {
            return Err(self.reject("none", InvalidReason::UnknownIssuer));
        };
        let km = &self.kms[idx];
        if !policy.allows(idx) {
            return Err(self.reject(km.name(), InvalidReason::KeyManagerNotAllowed));
        }
        if km.config.validation == ValidationMethod::Introspect {
            return self.introspect(km, token, digest, started).await;
        }
        let unavailable = |detail: String| AuthError::KeyManagerUnavailable {
            key_manager: km.name().to_string(),
            detail,
        };
        let mut keys = km
            .current_keys()
            .ok_or_else(|| unavailable("no keys loaded yet".to_string()))?;
        let choice = jwt::choose(&keys, &peek);
        match choice {
            KeyChoice::Some | KeyChoice::KidlessFallback => {}
            KeyChoice::NoKeyForAlg => {
                return Err(self.reject(km.name(), InvalidReason::AlgorithmNotAllowed))
            }
            KeyChoice::UnknownKid => keys = self.refresh_keys(km, &peek).await?,
        }
        let validations = km.validations();
        let validation = validations
            .get(&peek.alg)
            .ok_or_else(|| self.reject(km.name(), InvalidReason::AlgorithmNotAllowed))?;
        let mut verified = jwt::verify(token, &peek, &keys, validation);
        if choice == KeyChoice::KidlessFallback
            && verified == Err(InvalidReason::BadSignature)
            && matches!(km.keys, KeySource::Jwks(_))
        {
            // The kid may name a key the provider published since our last fetch.
            keys = self.refresh_keys(km, &peek).await?;
            verified = jwt::verify(token, &peek, &keys, validation);
        }
        let claims = verified.map_err(|reason| self.reject(km.name(), reason))?;
        let principal =
            principal_from_claims(km, &claims).map_err(|reason| self.reject(km.name(), reason))?;
        let now = now_secs();
        let ttl = match principal.expires_at {
            Some(exp) => Duration::from_secs(exp.saturating_sub(now)).min(km.config.cache_max_ttl),
            None => km.config.cache_max_ttl,
        };
        let principal = Arc::new(principal);
        self.verdicts
            .insert(digest, principal.clone(), ttl, started);
        self.metrics
            .validation
            .with_label_values(&[km.name(), "verified"])
            .observe(started.elapsed().as_secs_f64());
        Ok((principal, ValidationPath::Verified))
    }

    /// A shared, cooldown-bounded refresh for a kid we do not know; the keys after it.
    async fn refresh_keys(
        &self,
        km: &KeyManager,
        peek: &jwt::UnverifiedJwt,
    ) -> Result<Arc<keys::KeySet>, AuthError> {
        let unavailable = |detail: String| AuthError::KeyManagerUnavailable {
            key_manager: km.name().to_string(),
            detail,
        };
        let (KeySource::Jwks(store), Some(kid)) = (&km.keys, &peek.kid) else {
            return Err(self.reject(km.name(), InvalidReason::UnknownKey));
        };
        match store.refresh_for_kid(kid).await {
            KidLookup::Found => store
                .current()
                .ok_or_else(|| unavailable("keys vanished".into())),
            KidLookup::Unknown => Err(self.reject(km.name(), InvalidReason::UnknownKey)),
            KidLookup::Unavailable(e) => Err(unavailable(e)),
        }
    }

    async fn introspect(
        &self,
        km: &KeyManager,
        token: &str,
        digest: verdict::Digest,
        started: Instant,
    ) -> Result<(Arc<Principal>, ValidationPath), AuthError> {
        let Some(client) = &km.introspector else {
            return Err(AuthError::KeyManagerUnavailable {
                key_manager: km.name().to_string(),
                detail: "no introspection endpoint or credentials".to_string(),
            });
        };
        match self.introspections.lookup(client, token, digest).await {
            Ok((Verdict::Active(p), source)) => {
                let path = match source {
                    Source::Cached => ValidationPath::IntrospectionCached,
                    Source::Called | Source::Coalesced => ValidationPath::Introspected,
                };
                self.metrics
                    .validation
                    .with_label_values(&[km.name(), path.label()])
                    .observe(started.elapsed().as_secs_f64());
                Ok((p, path))
            }
            Ok((Verdict::Inactive, _)) => Err(self.reject(km.name(), InvalidReason::Inactive)),
            Err(detail) => Err(AuthError::KeyManagerUnavailable {
                key_manager: km.name().to_string(),
                detail,
            }),
        }
    }

    /// The name of the key manager with this id (a [`Principal`]'s `km_id`), if it is one of
    /// this snapshot's.
    pub fn key_manager_name(&self, id: u64) -> Option<&str> {
        self.km_index(id).map(|i| self.kms[i].name())
    }

    /// The index of the key manager with this id (a scan: there are few, and it beats hashing).
    fn km_index(&self, id: u64) -> Option<usize> {
        self.kms.iter().position(|k| k.id == id)
    }

    fn reject(&self, km: &str, reason: InvalidReason) -> AuthError {
        self.metrics
            .rejections
            .with_label_values(&[km, reason.label()])
            .inc();
        AuthError::InvalidToken(reason)
    }
}

fn claim_str<'a>(claims: &'a jwt::Claims, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// Subject, consumer key and scopes from verified claims, as WSO2 maps them (reference §1.8):
/// the configured consumer key claim, then `consumerKey`, `azp`, `client_id`; scopes from a
/// space-separated string or an array; a missing scope claim means no scopes.
pub fn principal_from_claims(
    km: &KeyManager,
    claims: &jwt::Claims,
) -> Result<Principal, InvalidReason> {
    let subject = claim_str(claims, "sub");
    let configured = km.config.consumer_key_claim.as_deref();
    let client_id = configured
        .into_iter()
        .chain(["consumerKey", "azp", "client_id"])
        .find_map(|c| claim_str(claims, c));
    let scopes: Vec<&str> = match claims.get(&km.config.scopes_claim) {
        Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
        // Each array element is one scope (an element with a space is not two scopes).
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    let expires_at = claims
        .get("exp")
        .and_then(|v| v.as_f64())
        .map(|f| f.max(0.0) as u64);
    let token_kind = claim_str(claims, "aut").and_then(TokenKind::from_aut);
    Principal::new(
        km.id,
        Identity {
            km_name: km.name(),
            subject,
            client_id,
        },
        &scopes,
        expires_at,
        token_kind,
    )
}
