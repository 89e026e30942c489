//! Configuration: file formats in, one validated runtime model out, every error at once.
//!
//! Loading goes text → `${VAR}` substitution ([`env`]) → serde surface structs ([`file`], unknown
//! keys rejected) → validation into [`Config`]. Validation never stops at the first problem: it
//! collects [`ConfigIssue`]s (file, field, message) across the main file and every API definition
//! so that `keygate check` can list them all, the way linkerd and River report config errors.

pub mod env;
pub mod file;
pub mod wso2;

use crate::catalog::{self, ApiDef};
use file::{CertificatesFile, ConnectorFile, KeyManagerFile, MainFile};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file it is in.
    pub file: PathBuf,
    /// The field path, e.g. `key_managers[0].issuer`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// At least one issue.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.issues.len())?;
        for issue in &self.issues {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

/// Collects issues while validating.
#[derive(Debug, Default)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    /// Record an issue.
    pub fn push(&mut self, file: &Path, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// `value`, or an empty string and an issue saying `field` `message` (for a required field).
    pub fn required(
        &mut self,
        value: Option<String>,
        file: &Path,
        field: impl Into<String>,
        message: &str,
    ) -> String {
        value.unwrap_or_else(|| {
            self.push(file, field, message);
            String::new()
        })
    }
}

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (relative paths resolve against its folder).
    pub source: PathBuf,
    /// Proxy listener. Defaults to `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz). Defaults to `127.0.0.1:9091`.
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy service. Defaults to 2.
    pub threads: usize,
    /// Key managers in declared order.
    pub key_managers: Vec<KeyManagerConfig>,
    /// API definitions from every `apis` source.
    pub apis: Vec<ApiDef>,
    /// Names of the identity headers sent upstream.
    pub upstream_headers: UpstreamHeaders,
    /// Bound on the JWT verdict cache. Defaults to 100 000 entries.
    pub verdict_cache_max_entries: u64,
    /// Bound on the introspection cache. Defaults to 100 000 entries.
    pub introspection_cache_max_entries: u64,
    /// How long in-flight requests may take to finish at shutdown. Defaults to 5 s.
    pub shutdown_grace: Duration,
    /// PEM bundle of the CAs trusted for https upstreams, instead of the system store.
    pub upstream_ca_file: Option<PathBuf>,
    /// Log lines as JSON objects (`json`) or text (`text`, the default).
    pub log_json: bool,
    /// One access-log line per request (target `keygate::access`). Defaults to true.
    pub access_log: bool,
    /// Unix socket over which listening sockets are handed to a new process (SIGQUIT to the old
    /// one, `run --upgrade` for the new one). Defaults to `/tmp/keygate_upgrade.sock`.
    pub upgrade_sock: PathBuf,
}

/// Identity header names. Defaults: `X-Auth-Subject`, `X-Auth-Client-Id`, `X-Auth-Scopes`,
/// `X-Auth-Key-Manager`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHeaders {
    /// `sub` of the token.
    pub subject: http::HeaderName,
    /// The consumer key (the key manager's `consumer_key_claim`).
    pub client_id: http::HeaderName,
    /// Granted scopes, space separated.
    pub scopes: http::HeaderName,
    /// The key manager that validated the token.
    pub key_manager: http::HeaderName,
}

impl Default for UpstreamHeaders {
    fn default() -> Self {
        Self {
            subject: http::HeaderName::from_static("x-auth-subject"),
            client_id: http::HeaderName::from_static("x-auth-client-id"),
            scopes: http::HeaderName::from_static("x-auth-scopes"),
            key_manager: http::HeaderName::from_static("x-auth-key-manager"),
        }
    }
}

impl UpstreamHeaders {
    /// All four names, for stripping client-sent copies.
    pub fn all(&self) -> [&http::HeaderName; 4] {
        [
            &self.subject,
            &self.client_id,
            &self.scopes,
            &self.key_manager,
        ]
    }
}

/// `type:` of a key manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyManagerKind {
    /// Asgardeo: endpoints default from `base_url` + `/t/<organization>`.
    Asgardeo,
    /// Any OpenID Connect provider: endpoints are given explicitly.
    Oidc,
}

/// How tokens of a key manager are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationMethod {
    /// Verify JWT signatures locally against the key manager's keys.
    SelfValidateJwt,
    /// Ask the key manager (RFC 7662).
    Introspect,
}

/// Where a key manager's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificates {
    /// A JWKS URL, fetched and refreshed.
    Jwks(url::Url),
    /// PEM text (a public key or an X.509 certificate), read once.
    Pem(String),
}

/// How the client authenticates to the introspection endpoint (RFC 7662 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with client id and secret.
    Basic,
    /// `client_secret_post`: client id and secret in the form body.
    Post,
}

/// A token handling pattern (WSO2 `tokenValidation` entry).
#[derive(Debug, Clone)]
pub enum TokenPattern {
    /// `REFERENCE`: the regex must match the opaque token (find, not full match, as WSO2).
    Reference(regex::Regex),
    /// `JWT`: the token must be JWT-shaped and each named claim must match its regex.
    Jwt(Vec<(String, regex::Regex)>),
}

impl PartialEq for TokenPattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Reference(a), Self::Reference(b)) => a.as_str() == b.as_str(),
            (Self::Jwt(a), Self::Jwt(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ca, ra), (cb, rb))| ca == cb && ra.as_str() == rb.as_str())
            }
            _ => false,
        }
    }
}

impl TokenPattern {
    /// Does this pattern accept `token`?
    pub fn accepts(&self, token: &str) -> bool {
        match self {
            Self::Reference(re) => re.is_match(token),
            Self::Jwt(claims) => {
                let Some(payload) = token.split('.').nth(1) else {
                    return false;
                };
                if token.split('.').count() != 3 {
                    return false;
                }
                use base64::Engine;
                let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)
                else {
                    return false;
                };
                let Ok(map) =
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
                else {
                    return false;
                };
                claims.iter().all(|(name, re)| match map.get(name) {
                    Some(serde_json::Value::String(s)) => re.is_match(s),
                    Some(v) if !v.is_null() => re.is_match(&v.to_string()),
                    _ => false,
                })
            }
        }
    }
}

/// A validated key manager. Equality decides whether a reload keeps the running key manager
/// (its keys, refreshers and cached verdicts).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyManagerConfig {
    /// Unique name; APIs list key managers by it.
    pub name: String,
    /// Provider type.
    pub kind: KeyManagerKind,
    /// Expected `iss`; routes JWTs to this key manager. Empty until discovery fills it when only
    /// `well_known_endpoint` gives it.
    pub issuer: String,
    /// OIDC discovery document: fetched at start and refreshed; fills what is unset.
    pub well_known_endpoint: Option<url::Url>,
    /// Verification keys.
    pub certificates: Option<Certificates>,
    /// RFC 7662 endpoint.
    pub introspection_endpoint: Option<url::Url>,
    /// OAuth token endpoint (used by `keygate sync`).
    pub token_endpoint: Option<url::Url>,
    /// Self-validation or introspection.
    pub validation: ValidationMethod,
    /// Client credentials for introspection and sync.
    pub client_id: Option<String>,
    /// Client secret for introspection and sync.
    pub client_secret: Option<Secret>,
    /// Claim holding the consumer key. Defaults to `azp` for Asgardeo; otherwise the WSO2 chain
    /// `consumerKey`, `azp`, `client_id`.
    pub consumer_key_claim: Option<String>,
    /// Claim holding the scopes (string or array). Defaults to `scope`.
    pub scopes_claim: String,
    /// Accepted audiences, any-of; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Allowed clock difference for `exp` and `nbf`. Defaults to 30 s.
    pub clock_skew: Duration,
    /// Period of background JWKS refreshes. Defaults to 15 min.
    pub jwks_refresh_interval: Duration,
    /// Cooldown between fetches caused by unknown kids. Defaults to 10 s.
    pub jwks_min_refresh_interval: Duration,
    /// How long an unknown kid is remembered. Defaults to 5 min.
    pub unknown_kid_ttl: Duration,
    /// Timeout of every call to the provider. Defaults to 5 s.
    pub http_timeout: Duration,
    /// Whether `exp` is required. Defaults to true.
    pub require_exp: bool,
    /// Longest life of a cached verdict. Defaults to 5 min.
    pub cache_max_ttl: Duration,
    /// Life of a cached inactive introspection result. Defaults to 30 s.
    pub negative_ttl: Duration,
    /// How introspection authenticates. Defaults to `client_secret_basic`.
    pub introspection_auth: ClientAuth,
    /// Which opaque tokens this key manager may be asked about (WSO2 "Token Handling Options").
    /// Empty accepts every token.
    pub token_handling: Vec<TokenPattern>,
    /// Asgardeo connector settings for `keygate sync`.
    pub connector: Option<ConnectorFile>,
}

impl KeyManagerConfig {
    /// A self-validating key manager with the documented defaults (tests, demo).
    pub fn self_validating(name: &str, issuer: &str, certificates: Certificates) -> Self {
        Self {
            name: name.to_string(),
            kind: KeyManagerKind::Oidc,
            issuer: issuer.to_string(),
            well_known_endpoint: None,
            certificates: Some(certificates),
            introspection_endpoint: None,
            token_endpoint: None,
            validation: ValidationMethod::SelfValidateJwt,
            client_id: None,
            client_secret: None,
            consumer_key_claim: None,
            scopes_claim: "scope".to_string(),
            audiences: Vec::new(),
            clock_skew: Duration::from_secs(30),
            jwks_refresh_interval: Duration::from_secs(15 * 60),
            jwks_min_refresh_interval: Duration::from_secs(10),
            unknown_kid_ttl: Duration::from_secs(5 * 60),
            http_timeout: Duration::from_secs(5),
            require_exp: true,
            cache_max_ttl: Duration::from_secs(5 * 60),
            negative_ttl: Duration::from_secs(30),
            introspection_auth: ClientAuth::Basic,
            token_handling: Vec::new(),
            connector: None,
        }
    }
}

/// The documented default path of the main config.
pub const DEFAULT_CONFIG_PATH: &str = "config/keygate.yaml";

impl Config {
    /// A config with the documented defaults and no key managers or APIs (tests, demo).
    pub fn empty() -> Self {
        Self {
            source: PathBuf::from("(built in)"),
            listen: "0.0.0.0:8080".parse().expect("literal"),
            admin_listen: "127.0.0.1:9091".parse().expect("literal"),
            threads: 2,
            key_managers: Vec::new(),
            apis: Vec::new(),
            upstream_headers: UpstreamHeaders::default(),
            verdict_cache_max_entries: 100_000,
            introspection_cache_max_entries: 100_000,
            shutdown_grace: Duration::from_secs(5),
            upstream_ca_file: None,
            log_json: false,
            access_log: true,
            upgrade_sock: PathBuf::from("/tmp/keygate_upgrade.sock"),
        }
    }

    /// Read, substitute, parse and validate `path` and every API source it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an explicit environment (tests).
    pub fn load_with_env(
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut issues = Issues::default();
        let config = load_inner(path, &lookup, &mut issues);
        match config {
            Some(c) if issues.0.is_empty() => Ok(c),
            _ => Err(ConfigError { issues: issues.0 }),
        }
    }

    /// Total number of resources over all APIs.
    pub fn resource_count(&self) -> usize {
        self.apis.iter().map(|a| a.resources.len()).sum()
    }
}

/// Read a file and substitute `${VAR}`; issues are recorded against `path`.
pub fn read_substituted(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            issues.push(path, "(file)", format!("cannot read: {e}"));
            return None;
        }
    };
    let (text, unset) = env::substitute_all(&text, lookup);
    for u in unset {
        issues.push(
            path,
            format!("line {}: {}", u.line, u.field),
            format!("environment variable {} is not set", u.var),
        );
    }
    Some(text)
}

fn load_inner(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<Config> {
    let text = read_substituted(path, lookup, issues)?;
    let main: MainFile = match serde_saphyr::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            issues.push(path, "(yaml)", yaml_error(&e));
            return None;
        }
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = Config::empty();
    config.source = path.to_path_buf();

    if let Some(l) = &main.listen {
        config.listen = parse_addr(path, "listen", l, issues).unwrap_or(config.listen);
    }
    if let Some(l) = &main.admin_listen {
        config.admin_listen =
            parse_addr(path, "admin_listen", l, issues).unwrap_or(config.admin_listen);
    }
    if config.listen == config.admin_listen && config.listen.port() != 0 {
        issues.push(
            path,
            "admin_listen",
            format!("{} is also the proxy listener", config.admin_listen),
        );
    }
    if let Some(t) = main.threads {
        if t == 0 || t > 256 {
            issues.push(path, "threads", "must be between 1 and 256");
        } else {
            config.threads = t;
        }
    }
    if let Some(g) = main.shutdown_grace {
        config.shutdown_grace = g.0;
    }
    match main.log_format.as_deref() {
        None | Some("text") => {}
        Some("json") => config.log_json = true,
        Some(other) => issues.push(
            path,
            "log_format",
            format!("{other:?} is not one of text, json"),
        ),
    }
    if let Some(a) = main.access_log {
        config.access_log = a;
    }
    if let Some(u) = &main.upgrade_sock {
        config.upgrade_sock = base_dir.join(u);
    }
    if let Some(ca) = &main.upstream_ca_file {
        let p = base_dir.join(ca);
        match std::fs::read_to_string(&p) {
            Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => config.upstream_ca_file = Some(p),
            Ok(_) => issues.push(
                path,
                "upstream_ca_file",
                format!("{} holds no PEM certificate", p.display()),
            ),
            Err(e) => issues.push(
                path,
                "upstream_ca_file",
                format!("cannot read {}: {e}", p.display()),
            ),
        }
    }
    if let Some(c) = &main.verdict_cache {
        if let Some(n) = c.max_entries {
            if n == 0 {
                issues.push(path, "verdict_cache.max_entries", "must be at least 1");
            } else {
                config.verdict_cache_max_entries = n;
            }
        }
    }
    if let Some(n) = main
        .introspection_cache
        .as_ref()
        .and_then(|c| c.max_entries)
    {
        if n == 0 {
            issues.push(
                path,
                "introspection_cache.max_entries",
                "must be at least 1",
            );
        } else {
            config.introspection_cache_max_entries = n;
        }
    }
    if let Some(h) = &main.upstream_headers {
        let d = UpstreamHeaders::default();
        let mut name = |field: &str, v: &Option<String>, default: http::HeaderName| match v {
            None => default,
            Some(s) => match http::HeaderName::from_bytes(s.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    issues.push(
                        path,
                        format!("upstream_headers.{field}"),
                        format!("{s:?} is not a valid header name"),
                    );
                    default
                }
            },
        };
        config.upstream_headers = UpstreamHeaders {
            subject: name("subject", &h.subject, d.subject),
            client_id: name("client_id", &h.client_id, d.client_id),
            scopes: name("scopes", &h.scopes, d.scopes),
            key_manager: name("key_manager", &h.key_manager, d.key_manager),
        };
    }

    for (i, km) in main.key_managers.iter().enumerate() {
        let merged;
        let km = match &km.wso2_export {
            None => km,
            Some(export) => {
                let p = base_dir.join(export);
                let doc = std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
                    .and_then(|t| {
                        serde_json::from_str::<serde_json::Value>(&t)
                            .map_err(|e| format!("{} is not JSON: {e}", p.display()))
                    });
                match doc {
                    Ok(doc) => {
                        merged = wso2::merge(km, &doc);
                        &merged
                    }
                    Err(e) => {
                        issues.push(path, format!("key_managers[{i}].wso2_export"), e);
                        continue;
                    }
                }
            }
        };
        if let Some(k) = validate_key_manager(path, &base_dir, i, km, issues) {
            config.key_managers.push(k);
        }
    }
    check_key_manager_uniqueness(path, &config.key_managers, issues);

    let sources = main
        .apis
        .clone()
        .unwrap_or_else(|| vec!["apis".to_string()]);
    for (i, src) in sources.iter().enumerate() {
        let p = base_dir.join(src);
        if !p.exists() {
            issues.push(
                path,
                format!("apis[{i}]"),
                format!("{} does not exist", p.display()),
            );
            continue;
        }
        config.apis.extend(catalog::load_path(&p, lookup, issues));
    }
    let km_names: Vec<&str> = config
        .key_managers
        .iter()
        .map(|k| k.name.as_str())
        .collect();
    catalog::check_cross_references(&config.apis, &km_names, issues);
    Some(config)
}

/// The first line of a YAML error (it carries the line and column; the rest is a snippet).
pub fn yaml_error(e: &serde_saphyr::Error) -> String {
    let s = e.to_string();
    let first = s.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn parse_addr(file: &Path, field: &str, s: &str, issues: &mut Issues) -> Option<SocketAddr> {
    match s.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(a)) => Some(a),
        _ => {
            issues.push(file, field, format!("{s:?} is not a host:port address"));
            None
        }
    }
}

fn check_key_manager_uniqueness(file: &Path, kms: &[KeyManagerConfig], issues: &mut Issues) {
    for (i, a) in kms.iter().enumerate() {
        for b in &kms[..i] {
            if a.name == b.name {
                issues.push(
                    file,
                    format!("key_managers[{i}].name"),
                    format!("{:?} is used twice", a.name),
                );
            }
            if !a.issuer.is_empty() && a.issuer == b.issuer {
                issues.push(
                    file,
                    format!("key_managers[{i}].issuer"),
                    format!(
                        "{:?} is also the issuer of {:?}: a JWT could not be routed",
                        a.issuer, b.name
                    ),
                );
            }
        }
    }
}

fn parse_url(file: &Path, field: &str, s: &str, issues: &mut Issues) -> Option<url::Url> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            issues.push(file, field, format!("{s:?} must be an http or https URL"));
            None
        }
        Err(e) => {
            issues.push(file, field, format!("{s:?} is not a URL: {e}"));
            None
        }
    }
}

fn validate_key_manager(
    file: &Path,
    base_dir: &Path,
    i: usize,
    km: &KeyManagerFile,
    issues: &mut Issues,
) -> Option<KeyManagerConfig> {
    let at = |f: &str| format!("key_managers[{i}].{f}");
    let before = issues.0.len();
    let name = match km.name.as_deref().map(str::trim) {
        Some("") | None => {
            issues.push(file, at("name"), "is required");
            String::new()
        }
        Some("all") => {
            issues.push(
                file,
                at("name"),
                "\"all\" is reserved (APIs use it to mean every key manager)",
            );
            String::new()
        }
        Some(n) => n.to_string(),
    };
    let kind = match km.kind.as_deref() {
        Some("asgardeo") => KeyManagerKind::Asgardeo,
        Some("oidc") | None => KeyManagerKind::Oidc,
        Some(other) => {
            issues.push(
                file,
                at("type"),
                format!("{other:?} is not one of asgardeo, oidc"),
            );
            KeyManagerKind::Oidc
        }
    };
    if km.enabled == Some(false) {
        // A disabled key manager is validated but not loaded, as WSO2 removes it from the gateway.
        return None;
    }
    // Asgardeo: every endpoint defaults from <base_url>/t/<organization>.
    let tenant_base = match kind {
        KeyManagerKind::Asgardeo => match km.organization.as_deref() {
            Some(org) if !org.trim().is_empty() => {
                let base = km.base_url.as_deref().unwrap_or("https://api.asgardeo.io");
                Some(format!("{}/t/{}", base.trim_end_matches('/'), org.trim()))
            }
            _ => {
                issues.push(file, at("organization"), "is required for type asgardeo");
                None
            }
        },
        KeyManagerKind::Oidc => {
            if km.organization.is_some() || km.base_url.is_some() {
                issues.push(
                    file,
                    at("organization"),
                    "organization and base_url apply to type asgardeo only",
                );
            }
            None
        }
    };
    let well_known = km
        .well_known_endpoint
        .as_deref()
        .and_then(|u| parse_url(file, &at("well_known_endpoint"), u, issues));
    let token_handling =
        parse_token_handling(file, &at("token_handling"), &km.token_handling, issues);
    let validation = match km.token_validation_method.as_deref() {
        None | Some("self_validate_jwt") => ValidationMethod::SelfValidateJwt,
        Some("introspect") => ValidationMethod::Introspect,
        Some(other) => {
            issues.push(
                file,
                at("token_validation_method"),
                format!("{other:?} is not one of self_validate_jwt, introspect"),
            );
            ValidationMethod::SelfValidateJwt
        }
    };
    let issuer = match (&km.issuer, &tenant_base) {
        (Some(i), _) if !i.trim().is_empty() => i.trim().to_string(),
        (_, Some(b)) => format!("{b}/oauth2/token"),
        // An Asgardeo key manager without organization was reported above.
        _ if kind == KeyManagerKind::Asgardeo => String::new(),
        // Discovery fills it.
        _ if well_known.is_some() => String::new(),
        _ => {
            issues.push(file, at("issuer"), "is required");
            String::new()
        }
    };
    let certificates = match (&km.certificates, &tenant_base) {
        (Some(c), _) => parse_certificates(file, base_dir, &at("certificates"), c, issues),
        (None, Some(b)) => url::Url::parse(&format!("{b}/oauth2/jwks"))
            .ok()
            .map(Certificates::Jwks),
        (None, None) => {
            if validation == ValidationMethod::SelfValidateJwt
                && kind == KeyManagerKind::Oidc
                && well_known.is_none()
            {
                issues.push(
                    file,
                    at("certificates"),
                    "is required to self-validate JWTs",
                );
            }
            None
        }
    };
    let introspection_endpoint = match (&km.introspection_endpoint, &tenant_base) {
        (Some(u), _) => parse_url(file, &at("introspection_endpoint"), u, issues),
        (None, Some(b)) => url::Url::parse(&format!("{b}/oauth2/introspect")).ok(),
        _ => None,
    };
    let token_endpoint = match (&km.token_endpoint, &tenant_base) {
        (Some(u), _) => parse_url(file, &at("token_endpoint"), u, issues),
        (None, Some(b)) => url::Url::parse(&format!("{b}/oauth2/token")).ok(),
        _ => None,
    };
    let mut out =
        KeyManagerConfig::self_validating(&name, &issuer, Certificates::Pem(String::new()));
    out.kind = kind;
    out.certificates = certificates;
    out.well_known_endpoint = well_known;
    out.introspection_endpoint = introspection_endpoint;
    out.token_endpoint = token_endpoint;
    out.validation = validation;
    out.client_id = km.client_id.clone().filter(|s| !s.is_empty());
    out.client_secret = km
        .client_secret
        .clone()
        .filter(|s| !s.is_empty())
        .map(Secret);
    out.consumer_key_claim = km
        .consumer_key_claim
        .clone()
        .or_else(|| (kind == KeyManagerKind::Asgardeo).then(|| "azp".to_string()));
    out.scopes_claim = km
        .scopes_claim
        .clone()
        .unwrap_or_else(|| "scope".to_string());
    out.audiences = km.audiences.clone();
    let dur = |v: Option<file::HumanDuration>, d: Duration| v.map(|x| x.0).unwrap_or(d);
    out.clock_skew = dur(km.clock_skew, out.clock_skew);
    out.jwks_refresh_interval = dur(km.jwks_refresh_interval, out.jwks_refresh_interval);
    out.jwks_min_refresh_interval =
        dur(km.jwks_min_refresh_interval, out.jwks_min_refresh_interval);
    out.unknown_kid_ttl = dur(km.unknown_kid_ttl, out.unknown_kid_ttl);
    out.http_timeout = dur(km.http_timeout, out.http_timeout);
    out.cache_max_ttl = dur(km.cache_max_ttl, out.cache_max_ttl);
    out.negative_ttl = dur(km.negative_ttl, out.negative_ttl);
    out.require_exp = km.require_exp.unwrap_or(true);
    out.connector = km.connector.clone().map(|mut c| {
        // Asgardeo: the connector's endpoints default from the organization (reference §4.5).
        if let Some(b) = &tenant_base {
            c.api_resource_management_endpoint
                .get_or_insert_with(|| format!("{b}/api/server/v1/api-resources"));
            c.roles_endpoint
                .get_or_insert_with(|| format!("{b}/scim2/v2/Roles"));
        }
        c.global_scopes_resource
            .get_or_insert_with(|| "APIM_GLOBAL_SCOPES".to_string());
        c
    });
    out.token_handling = token_handling;
    out.introspection_auth = match km.introspection_auth.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some(other) => {
            issues.push(
                file,
                at("introspection_auth"),
                format!("{other:?} is not one of client_secret_basic, client_secret_post"),
            );
            ClientAuth::Basic
        }
    };
    if validation == ValidationMethod::Introspect {
        if out.introspection_endpoint.is_none() && out.well_known_endpoint.is_none() {
            issues.push(
                file,
                at("introspection_endpoint"),
                "is required with token_validation_method introspect",
            );
        }
        if out.client_id.is_none() || out.client_secret.is_none() {
            issues.push(
                file,
                at("client_id"),
                "client_id and client_secret are required to introspect",
            );
        }
    }
    if out.negative_ttl > out.cache_max_ttl {
        issues.push(file, at("negative_ttl"), "must not exceed cache_max_ttl");
    }
    if out.clock_skew > Duration::from_secs(600) {
        issues.push(
            file,
            at("clock_skew"),
            "more than 10m makes expiry meaningless",
        );
    }
    if out.jwks_refresh_interval < Duration::from_secs(1) {
        issues.push(file, at("jwks_refresh_interval"), "must be at least 1s");
    }
    if out.jwks_min_refresh_interval < Duration::from_secs(1) {
        issues.push(
            file,
            at("jwks_min_refresh_interval"),
            "must be at least 1s: it bounds the fetches a flood of unknown kids can cause",
        );
    }
    if out.http_timeout.is_zero() {
        issues.push(file, at("http_timeout"), "must be more than 0s");
    }
    if out.cache_max_ttl.is_zero() {
        issues.push(file, at("cache_max_ttl"), "must be more than 0s");
    }
    if let Some(c) = &km.connector {
        for (f, v) in [
            ("roles_endpoint", &c.roles_endpoint),
            (
                "api_resource_management_endpoint",
                &c.api_resource_management_endpoint,
            ),
        ] {
            if let Some(v) = v {
                parse_url(file, &at(&format!("connector.{f}")), v, issues);
            }
        }
    }
    (issues.0.len() == before).then_some(out)
}

fn parse_token_handling(
    file: &Path,
    field: &str,
    entries: &[serde_json::Value],
    issues: &mut Issues,
) -> Vec<TokenPattern> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if e.get("enabled")
            .or_else(|| e.get("enable"))
            .and_then(|v| v.as_bool())
            == Some(false)
        {
            continue;
        }
        let regex = |s: &str, at: &str, issues: &mut Issues| match regex::Regex::new(s) {
            Ok(r) => Some(r),
            Err(err) => {
                issues.push(file, at, format!("invalid regex {s:?}: {err}"));
                None
            }
        };
        match (e.get("type").and_then(|t| t.as_str()), e.get("value")) {
            (Some("REFERENCE"), Some(serde_json::Value::String(v))) => {
                if let Some(r) = regex(v, &format!("{at}.value"), issues) {
                    out.push(TokenPattern::Reference(r));
                }
            }
            (Some("JWT"), Some(serde_json::Value::Object(map))) => {
                // WSO2 stores {"body": {claim: regex}}; a flat {claim: regex} is accepted too.
                let claims = match map.get("body") {
                    Some(serde_json::Value::Object(b)) => b,
                    _ => map,
                };
                let mut compiled = Vec::new();
                for (claim, v) in claims {
                    match v.as_str() {
                        Some(v) => compiled.extend(regex(v, &format!("{at}.value.{claim}"), issues).map(|r| (claim.clone(), r))),
                        None => issues.push(file, format!("{at}.value.{claim}"), "must be a regex string"),
                    }
                }
                out.push(TokenPattern::Jwt(compiled));
            }
            (Some("CUSTOM"), _) => issues.push(file, format!("{at}.type"), "CUSTOM token handling needs a Java extension; not supported"),
            _ => issues.push(file, at, "expected {type: REFERENCE, value: <regex>} or {type: JWT, value: {<claim>: <regex>}}"),
        }
    }
    out
}

fn parse_certificates(
    file: &Path,
    base_dir: &Path,
    field: &str,
    c: &CertificatesFile,
    issues: &mut Issues,
) -> Option<Certificates> {
    match c.kind.as_str() {
        "JWKS" | "jwks" => {
            parse_url(file, &format!("{field}.value"), &c.value, issues).map(Certificates::Jwks)
        }
        "PEM" | "pem" => {
            let text = if c.value.trim_start().starts_with("-----BEGIN") {
                c.value.clone()
            } else {
                let p = base_dir.join(c.value.trim());
                match std::fs::read_to_string(&p) {
                    Ok(t) => t,
                    Err(e) => {
                        issues.push(
                            file,
                            format!("{field}.value"),
                            format!("cannot read PEM file {}: {e}", p.display()),
                        );
                        return None;
                    }
                }
            };
            match crate::auth::keys::KeySet::from_pem(&text) {
                Ok(_) => Some(Certificates::Pem(text)),
                Err(e) => {
                    issues.push(file, format!("{field}.value"), e);
                    None
                }
            }
        }
        other => {
            issues.push(
                file,
                format!("{field}.type"),
                format!("{other:?} is not one of JWKS, PEM"),
            );
            None
        }
    }
}
