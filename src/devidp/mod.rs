//! An embedded, Asgardeo-shaped identity provider for `keygate demo` and the integration tests.
//!
//! It serves, under `/t/<org>`, the discovery document (`/oauth2/token/.well-known/openid-configuration`),
//! the JWKS (`/oauth2/jwks`), a token endpoint (`/oauth2/token`) that issues tokens for the
//! `client_credentials` grant with the requested scopes (RS256 JWTs with Asgardeo's claims: `iss`
//! = `.../oauth2/token`, `azp`, `client_id`, `scope`, `aut: APPLICATION`; or opaque tokens, for
//! clients registered as opaque, Asgardeo's default), and RFC 7662 introspection
//! (`/oauth2/introspect`, HTTP Basic with a registered client) for the tokens it issued. Tests
//! use its switches (down, delay, introspection failure, revocation, key rotation) and its call
//! counters, so they can assert how many calls reached the provider and not only what the proxy
//! answered.

pub mod keys;
pub mod management;

use crate::loopback::{self, Served};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http_body_util::BodyExt;
use hyper::Response;
use keys::{SigningAlg, SigningKey};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default organization of the embedded provider.
pub const DEFAULT_ORG: &str = "keygate-demo";

/// Calls that reached the provider, by endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// JWKS requests (including refused ones while down).
    pub jwks: AtomicU64,
    /// Discovery requests.
    pub discovery: AtomicU64,
    /// Token requests.
    pub token: AtomicU64,
    /// Introspection requests.
    pub introspect: AtomicU64,
}

/// Token format a client receives from the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// A signed JWT.
    Jwt,
    /// A random reference token, validated by introspection.
    Opaque,
}

#[derive(Debug, Clone)]
struct Issued {
    client_id: String,
    scope: String,
    iat: u64,
    exp: u64,
}

struct State {
    org: String,
    base: RwLock<String>,
    published: RwLock<Vec<Arc<SigningKey>>>,
    current: RwLock<Arc<SigningKey>>,
    clients: RwLock<HashMap<String, (String, TokenFormat)>>,
    issued: RwLock<HashMap<[u8; 32], Issued>>,
    revoked: RwLock<std::collections::HashSet<[u8; 32]>>,
    counters: Counters,
    down: AtomicBool,
    introspection_fails: AtomicBool,
    ignore_expiry: AtomicBool,
    management: management::Management,
    delay_ms: AtomicU64,
    kid_seq: AtomicU64,
}

/// The running provider.
pub struct DevIdp {
    state: Arc<State>,
    served: Served,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DevIdp {
    /// Start on `127.0.0.1:0` with organization [`DEFAULT_ORG`].
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with("127.0.0.1:0".parse().expect("literal"), DEFAULT_ORG).await
    }

    /// Start on `addr` for organization `org`. Publishes one key of each algorithm; the RS256
    /// key is the one the token endpoint signs with.
    pub async fn start_with(addr: SocketAddr, org: &str) -> std::io::Result<Self> {
        let rs = Arc::new(SigningKey::generate(SigningAlg::RS256, "rs256-1"));
        let published = vec![
            rs.clone(),
            Arc::new(SigningKey::generate(SigningAlg::PS256, "ps256-1")),
            Arc::new(SigningKey::generate(SigningAlg::ES256, "es256-1")),
            Arc::new(SigningKey::generate(SigningAlg::EdDSA, "eddsa-1")),
        ];
        let state = Arc::new(State {
            org: org.to_string(),
            base: RwLock::new(String::new()),
            published: RwLock::new(published),
            current: RwLock::new(rs),
            clients: RwLock::new(HashMap::from([
                (
                    "demo-client".to_string(),
                    ("demo-secret".to_string(), TokenFormat::Jwt),
                ),
                (
                    "opaque-client".to_string(),
                    ("opaque-secret".to_string(), TokenFormat::Opaque),
                ),
                // The management app of `keygate sync` (Asgardeo: a Standard-Based app
                // authorized for the API Resource Management and SCIM2 Roles APIs).
                (
                    "mgmt-client".to_string(),
                    ("mgmt-secret".to_string(), TokenFormat::Jwt),
                ),
            ])),
            issued: RwLock::new(HashMap::new()),
            revoked: RwLock::new(std::collections::HashSet::new()),
            counters: Counters::default(),
            down: AtomicBool::new(false),
            introspection_fails: AtomicBool::new(false),
            ignore_expiry: AtomicBool::new(false),
            management: management::Management::default(),
            delay_ms: AtomicU64::new(0),
            kid_seq: AtomicU64::new(1),
        });
        let s = state.clone();
        let handler: loopback::Handler = Arc::new(move |req| {
            let s = s.clone();
            Box::pin(async move { handle(&s, req).await })
        });
        let served = loopback::serve(addr, handler).await?;
        *state.base.write().unwrap_or_else(|e| e.into_inner()) = format!("http://{}", served.addr);
        Ok(Self { state, served })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// Advertise another base URL (as a provider that moved would): in the discovery document,
    /// and in the issuer of the tokens its token endpoint issues and its introspection answers.
    /// The server itself stays where it is.
    pub fn set_advertised_base(&self, base: &str) {
        *self.state.base.write().unwrap_or_else(|e| e.into_inner()) = base.to_string();
    }

    /// `http://addr` (an Asgardeo `base_url`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// The organization.
    pub fn org(&self) -> &str {
        &self.state.org
    }

    /// `<base>/t/<org>`.
    pub fn tenant_url(&self) -> String {
        format!("{}/t/{}", self.base_url(), self.state.org)
    }

    /// The `iss` of its tokens (Asgardeo: `.../oauth2/token`).
    pub fn issuer(&self) -> String {
        format!("{}/oauth2/token", self.tenant_url())
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/oauth2/jwks", self.tenant_url())
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.tenant_url())
    }

    /// Call counters.
    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// JWKS calls so far.
    pub fn jwks_calls(&self) -> u64 {
        self.state.counters.jwks.load(Ordering::SeqCst)
    }

    /// Answer 503 to everything (`true`) or serve normally.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Delay every answer.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Register a client for the token and introspection endpoints.
    pub fn add_client(&self, id: &str, secret: &str, format: TokenFormat) {
        self.state
            .clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.into(), (secret.into(), format));
    }

    /// The management APIs (API resources, SCIM2 roles): state, calls, switches.
    pub fn management(&self) -> &management::Management {
        &self.state.management
    }

    /// The API Resource Management endpoint.
    pub fn api_resources_url(&self) -> String {
        format!("{}/api/server/v1/api-resources", self.tenant_url())
    }

    /// The SCIM2 Roles endpoint.
    pub fn roles_url(&self) -> String {
        format!("{}/scim2/v2/Roles", self.tenant_url())
    }

    /// The introspection endpoint.
    pub fn introspection_url(&self) -> String {
        format!("{}/oauth2/introspect", self.tenant_url())
    }

    /// Introspection calls so far.
    pub fn introspect_calls(&self) -> u64 {
        self.state.counters.introspect.load(Ordering::SeqCst)
    }

    /// Answer introspection with HTTP 500 (`true`) or normally.
    pub fn set_introspection_failure(&self, fail: bool) {
        self.state.introspection_fails.store(fail, Ordering::SeqCst);
    }

    /// Report expired tokens as active (a misbehaving provider), to show that keygate does not
    /// trust such an answer.
    pub fn set_ignore_expiry(&self, ignore: bool) {
        self.state.ignore_expiry.store(ignore, Ordering::SeqCst);
    }

    /// Revoke a token it issued: introspection answers `active: false` from now on.
    pub fn revoke(&self, token: &str) {
        self.state
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest(token));
    }

    /// Issue an opaque token for `client_id` with `scopes`, valid for `ttl`.
    pub fn mint_opaque(&self, client_id: &str, scopes: &[&str], ttl: Duration) -> String {
        issue_opaque(&self.state, client_id, &scopes.join(" "), ttl)
    }

    /// Publish a new RS256 key and sign with it from now on (the old keys stay published).
    /// Returns the new kid.
    pub fn rotate(&self) -> String {
        let n = self.state.kid_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let key = Arc::new(SigningKey::generate(
            SigningAlg::RS256,
            &format!("rs256-{n}"),
        ));
        let kid = key.kid.clone();
        self.state
            .published
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.clone());
        *self
            .state
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = key;
        kid
    }

    /// Publish an extra key (it is served in the JWKS from now on; the token endpoint keeps
    /// signing with the current RS256 key).
    pub fn publish(&self, key: SigningKey) -> Arc<SigningKey> {
        let key = Arc::new(key);
        self.state
            .published
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.clone());
        key
    }

    /// The published key with this kid.
    pub fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.state
            .published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// The key the token endpoint signs with.
    pub fn current_key(&self) -> Arc<SigningKey> {
        self.state
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The JWKS document currently served.
    pub fn jwks(&self) -> Value {
        jwks_doc(&self.state)
    }

    /// Claims of an application token for `client_id` with `scopes`, valid for `ttl`.
    pub fn claims(&self, client_id: &str, scopes: &[&str], ttl: Duration) -> Value {
        app_claims(
            &self.issuer(),
            &self.state.org,
            client_id,
            &scopes.join(" "),
            ttl,
        )
    }

    /// Mint a JWT access token as the token endpoint would, without an HTTP call.
    pub fn mint(&self, client_id: &str, scopes: &[&str]) -> String {
        self.mint_claims(&self.claims(client_id, scopes, Duration::from_secs(3600)))
    }

    /// Mint arbitrary claims with the current signing key (remembered for introspection).
    pub fn mint_claims(&self, claims: &Value) -> String {
        let token = self.current_key().mint(json!({}), claims);
        remember_jwt(&self.state, &token, claims);
        token
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn remember_jwt(s: &State, token: &str, claims: &Value) {
    let issued = Issued {
        client_id: claims["client_id"]
            .as_str()
            .or(claims["azp"].as_str())
            .unwrap_or("")
            .to_string(),
        scope: claims["scope"].as_str().unwrap_or("").to_string(),
        iat: claims["iat"].as_u64().unwrap_or(0),
        exp: claims["exp"].as_u64().unwrap_or(0),
    };
    s.issued
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(digest(token), issued);
}

fn issue_opaque(s: &State, client_id: &str, scope: &str, ttl: Duration) -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Asgardeo's opaque tokens look like UUIDs.
    let token = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let now = now();
    let issued = Issued {
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        iat: now,
        exp: now + ttl.as_secs(),
    };
    s.issued
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(digest(&token), issued);
    token
}

fn app_claims(issuer: &str, org: &str, client_id: &str, scope: &str, ttl: Duration) -> Value {
    let now = now();
    let jti: String = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{client_id}{now}{:?}", std::time::Instant::now()).as_bytes(),
    )
    .as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "iss": issuer, "sub": client_id, "aud": client_id, "azp": client_id, "client_id": client_id,
        "scope": scope, "aut": "APPLICATION", "org_name": org,
        "iat": now, "nbf": now, "exp": now + ttl.as_secs(), "jti": jti,
    })
}

fn jwks_doc(s: &State) -> Value {
    let keys: Vec<Value> = s
        .published
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|k| k.jwk())
        .collect();
    json!({ "keys": keys })
}

fn discovery(s: &State) -> Value {
    let base = s.base.read().unwrap_or_else(|e| e.into_inner()).clone();
    let t = format!("{base}/t/{}", s.org);
    json!({
        "issuer": format!("{t}/oauth2/token"),
        "authorization_endpoint": format!("{t}/oauth2/authorize"),
        "token_endpoint": format!("{t}/oauth2/token"),
        "jwks_uri": format!("{t}/oauth2/jwks"),
        "introspection_endpoint": format!("{t}/oauth2/introspect"),
        "revocation_endpoint": format!("{t}/oauth2/revoke"),
        "registration_endpoint": format!("{t}/api/identity/oauth2/dcr/v1.1/register"),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn basic_auth(req: &hyper::Request<hyper::body::Incoming>) -> Option<(String, String)> {
    let v = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn handle(s: &State, req: hyper::Request<hyper::body::Incoming>) -> Response<loopback::Body> {
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let prefix = format!("/t/{}", s.org);
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(&prefix) else {
        return loopback::json(404, &json!({"error": "not_found"}));
    };
    let counter = match rest {
        "/oauth2/jwks" => Some(&s.counters.jwks),
        "/oauth2/token/.well-known/openid-configuration" => Some(&s.counters.discovery),
        "/oauth2/token" => Some(&s.counters.token),
        "/oauth2/introspect" => Some(&s.counters.introspect),
        _ => None,
    };
    if let Some(c) = counter {
        c.fetch_add(1, Ordering::SeqCst);
    }
    if s.down.load(Ordering::SeqCst) {
        return loopback::json(503, &json!({"error": "temporarily_unavailable"}));
    }
    if rest.starts_with("/api/server/v1/api-resources") || rest.starts_with("/scim2/v2/Roles") {
        // A management token: one this provider issued, with its granted scopes.
        let granted = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| {
                s.issued
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&digest(t))
                    .cloned()
            })
            .filter(|i| i.exp > now())
            .map(|i| i.scope.split_whitespace().map(str::to_string).collect());
        let rest = rest.to_string();
        return s.management.handle(&rest, granted, req).await;
    }
    match (req.method().as_str(), rest) {
        ("GET", "/oauth2/jwks") => loopback::json(200, &jwks_doc(s)),
        ("GET", "/oauth2/token/.well-known/openid-configuration") => {
            loopback::json(200, &discovery(s))
        }
        ("POST", "/oauth2/token") => token(s, req).await,
        ("POST", "/oauth2/introspect") => introspect(s, req).await,
        _ => loopback::json(404, &json!({"error": "not_found"})),
    }
}

async fn token(s: &State, req: hyper::Request<hyper::body::Incoming>) -> Response<loopback::Body> {
    let basic = basic_auth(&req);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return loopback::json(400, &json!({"error": "invalid_request"})),
    };
    let f = form(&body);
    let (id, secret) = match basic
        .or_else(|| Some((f.get("client_id")?.clone(), f.get("client_secret")?.clone())))
    {
        Some(c) => c,
        None => return loopback::json(401, &json!({"error": "invalid_client"})),
    };
    let known = s
        .clients
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    let Some((_, format)) = known.filter(|(sec, _)| *sec == secret) else {
        return loopback::json(
            401,
            &json!({"error": "invalid_client", "error_description": "Client credentials are invalid."}),
        );
    };
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return loopback::json(400, &json!({"error": "unsupported_grant_type"}));
    }
    let scope = f.get("scope").cloned().unwrap_or_default();
    let token = match format {
        TokenFormat::Opaque => issue_opaque(s, &id, &scope, Duration::from_secs(3600)),
        TokenFormat::Jwt => {
            let base = s.base.read().unwrap_or_else(|e| e.into_inner()).clone();
            let issuer = format!("{base}/t/{}/oauth2/token", s.org);
            let claims = app_claims(&issuer, &s.org, &id, &scope, Duration::from_secs(3600));
            let key = s.current.read().unwrap_or_else(|e| e.into_inner()).clone();
            let token = key.mint(json!({}), &claims);
            remember_jwt(s, &token, &claims);
            token
        }
    };
    loopback::json(
        200,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": scope}),
    )
}

async fn introspect(
    s: &State,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<loopback::Body> {
    let basic = basic_auth(&req);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return loopback::json(400, &json!({"error": "invalid_request"})),
    };
    let mut f = form(&body);
    // client_secret_basic or client_secret_post (RFC 7662 §2.1 leaves the method open).
    let credentials = basic.or_else(|| Some((f.remove("client_id")?, f.remove("client_secret")?)));
    let authorized = credentials.is_some_and(|(id, secret)| {
        s.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|(sec, _)| *sec == secret)
    });
    if !authorized {
        return loopback::json(401, &json!({"error": "invalid_client"}));
    }
    if s.introspection_fails.load(Ordering::SeqCst) {
        return loopback::json(500, &json!({"error": "server_error"}));
    }
    let Some(token) = f.remove("token") else {
        return loopback::json(400, &json!({"error": "invalid_request"}));
    };
    let d = digest(&token);
    let issued = s
        .issued
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&d)
        .cloned();
    let revoked = s
        .revoked
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&d);
    let active = issued
        .as_ref()
        .is_some_and(|i| !revoked && (i.exp > now() || s.ignore_expiry.load(Ordering::SeqCst)));
    let Some(i) = issued.filter(|_| active) else {
        return loopback::json(200, &json!({"active": false}));
    };
    let base = s.base.read().unwrap_or_else(|e| e.into_inner()).clone();
    loopback::json(
        200,
        &json!({
            "active": true, "scope": i.scope, "client_id": i.client_id, "username": i.client_id,
            "sub": i.client_id, "exp": i.exp, "iat": i.iat, "nbf": i.iat, "aud": i.client_id,
            "iss": format!("{base}/t/{}/oauth2/token", s.org), "token_type": "Bearer", "aut": "APPLICATION",
        }),
    )
}

/// `keygate devidp`: run the provider alone on `listen` until SIGINT/SIGTERM. With `out`, write
/// its JWKS (`jwks.json`), its endpoints (`idp.env`) and token pools of `count` and of 1 token
/// (`rs256-<n>.txt`, `es256-<n>.txt`, `opaque-<n>.txt`, scope `orders:read`, valid 2 h) for
/// load tests.
pub fn run_standalone(
    listen: SocketAddr,
    out: Option<&std::path::Path>,
    count: usize,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let idp = DevIdp::start_with(listen, DEFAULT_ORG).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        if let Some(dir) = out {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let w = |name: &str, text: String| std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"));
            w("jwks.json", idp.jwks().to_string())?;
            w(
                "idp.env",
                format!(
                    "IDP_ISSUER={}\nIDP_JWKS={}\nIDP_INTROSPECT={}\nIDP_TOKEN={}\nIDP_BASE={}\nIDP_ORG={}\n",
                    idp.issuer(),
                    idp.jwks_url(),
                    idp.introspection_url(),
                    idp.token_url(),
                    idp.base_url(),
                    idp.org()
                ),
            )?;
            let ttl = Duration::from_secs(7200);
            let es = idp.key("es256-1").ok_or("no ES256 key")?;
            for n in [1, count] {
                let mut rs = String::new();
                let mut ec = String::new();
                let mut op = String::new();
                for i in 0..n {
                    let mut claims = idp.claims(&format!("app-{i}"), &["orders:read"], ttl);
                    claims["jti"] = json!(format!("bench-{n}-{i}"));
                    rs.push_str(&idp.mint_claims(&claims));
                    rs.push('\n');
                    ec.push_str(&es.mint(json!({}), &claims));
                    ec.push('\n');
                    op.push_str(&idp.mint_opaque(&format!("app-{i}"), &["orders:read"], ttl));
                    op.push('\n');
                }
                w(&format!("rs256-{n}.txt"), rs)?;
                w(&format!("es256-{n}.txt"), ec)?;
                w(&format!("opaque-{n}.txt"), op)?;
            }
        }
        println!("keygate devidp: issuer {} (JWKS {}, introspection {})", idp.issuer(), idp.jwks_url(), idp.introspection_url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
