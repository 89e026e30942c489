//! API definitions: what is published, under which context, guarded by which scopes.
//!
//! The catalog is the one model shared by the data plane (routing, scope checks) and the control
//! plane (scope sync). Sources are parsed into [`ApiDef`]s ([`native`] reads keygate's own YAML);
//! [`route`] compiles them into the table the proxy matches requests against.

pub mod apictl;
pub mod native;
pub mod route;

use crate::config::Issues;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which key managers may validate tokens for an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerSelector {
    /// `all`: every configured key manager, in config order.
    All,
    /// These, in this order.
    Named(Vec<String>),
}

/// WSO2 resource auth types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// `None`: no credential is looked at, scopes are not checked.
    None,
    /// Any valid token (WSO2 `Application & Application User`, the default).
    Any,
    /// `Application`: only application tokens (client credentials; Asgardeo `aut: APPLICATION`).
    Application,
    /// `Application User`: only tokens issued to a user (Asgardeo `aut: APPLICATION_USER`).
    ApplicationUser,
}

/// A resource: verb + URL template, and the scopes of which any one suffices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// HTTP method.
    pub verb: http::Method,
    /// URL template relative to the API base, e.g. `/{id}` or `/*`.
    pub target: String,
    /// Required scopes, any-of; empty means any valid token.
    pub scopes: Vec<String>,
    /// Whether a token is needed at all.
    pub auth: AuthType,
}

/// A scope the API declares (used by `keygate sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDef {
    /// Scope name.
    pub name: String,
    /// Display name; defaults to the name.
    pub display_name: String,
    /// Description; defaults to empty.
    pub description: String,
    /// Roles bound to the scope.
    pub roles: Vec<String>,
}

/// Where an API's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// The URL as written.
    pub url: url::Url,
    /// Resolved at load time (Pingora's `HttpPeer::new` would panic on a bad name).
    pub addr: SocketAddr,
    /// https?
    pub tls: bool,
    /// Host name for SNI and the upstream `Host` header.
    pub host: String,
    /// `Host` header value (`host[:port]`).
    pub authority: String,
    /// Path prefix on the upstream, without a trailing slash (may be empty).
    pub base_path: String,
}

/// Upstream timeouts. Defaults: connect 5 s, read 60 s, write 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Between reads of the upstream response.
    pub read: Duration,
    /// Between writes of the request body.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            write: Duration::from_secs(60),
        }
    }
}

/// One API definition, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiDef {
    /// Name.
    pub name: String,
    /// Context, normalised to start with `/` and have no trailing `/`.
    pub context: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Also served at the context without the version.
    pub default_version: bool,
    /// Production endpoint.
    pub upstream: UpstreamTarget,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Key managers allowed to validate its tokens.
    pub key_managers: KeyManagerSelector,
    /// Header carrying the bearer token (lower-cased). Defaults to `authorization`.
    pub authorization_header: http::HeaderName,
    /// Forward the token header upstream. Defaults to false, as WSO2.
    pub forward_authorization: bool,
    /// Declared scopes.
    pub scopes: Vec<ScopeDef>,
    /// Resources.
    pub resources: Vec<ResourceDef>,
    /// The file it came from.
    pub source: PathBuf,
}

impl ApiDef {
    /// The path prefixes this API answers on: `/ctx/ver`, and `/ctx` for the default version.
    /// A context template (`/{version}/orders`) places the version itself; its default version
    /// drops that segment.
    pub fn base_paths(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.context.contains("{version}") {
            v.push(self.context.replace("{version}", &self.version));
            let without = self.context.replace("/{version}", "");
            if self.default_version && !without.is_empty() {
                v.push(without);
            }
        } else {
            v.push(format!("{}/{}", self.context, self.version));
            if self.default_version {
                v.push(self.context.clone());
            }
        }
        v
    }
}

/// Load API definitions from a file, an apictl project folder, or a folder of them: native
/// YAML files, OpenAPI files with `x-wso2-basePath`, and apictl project subfolders (sorted).
pub fn load_path(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Vec<ApiDef> {
    if path.is_dir() && apictl::is_project(path) {
        return apictl::load_project(path, lookup, issues)
            .into_iter()
            .collect();
    }
    if !path.is_dir() {
        return load_file(path, lookup, issues).into_iter().collect();
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            issues.push(path, "(folder)", format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        if p.is_dir() {
            if apictl::is_project(&p) {
                out.extend(apictl::load_project(&p, lookup, issues));
            }
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.extend(load_file(&p, lookup, issues));
        }
    }
    out
}

/// One file: an OpenAPI definition with WSO2 extensions, or a native API definition.
fn load_file(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<ApiDef> {
    let mut probe = Issues::default();
    if let Some(doc) = apictl::read_document(path, lookup, &mut probe) {
        if apictl::is_wso2_openapi(&doc) {
            issues.0.extend(probe.0);
            return apictl::load_openapi(path, &doc, issues);
        }
    }
    native::load_file(path, lookup, issues)
}

/// Checks across APIs: key manager names exist, no two APIs claim the same base path.
pub fn check_cross_references(apis: &[ApiDef], key_managers: &[&str], issues: &mut Issues) {
    for api in apis {
        if let KeyManagerSelector::Named(names) = &api.key_managers {
            for (i, n) in names.iter().enumerate() {
                if !key_managers.contains(&n.as_str()) {
                    issues.push(
                        &api.source,
                        format!("key_managers[{i}]"),
                        format!("{n:?} is not a configured key manager (known: {key_managers:?})"),
                    );
                }
            }
        }
    }
    let mut seen: Vec<(String, &ApiDef)> = Vec::new();
    for api in apis {
        for base in api.base_paths() {
            if let Some((_, other)) = seen.iter().find(|(b, _)| *b == base) {
                issues.push(
                    &api.source,
                    "context",
                    format!(
                        "{base} is already served by API {:?} ({})",
                        other.name,
                        other.source.display()
                    ),
                );
            } else {
                seen.push((base, api));
            }
        }
    }
}

/// Parse and resolve an upstream URL.
pub fn parse_upstream(s: &str) -> Result<UpstreamTarget, String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("{s:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))?;
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
        None => url.host_str().unwrap_or(&host).to_string(),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{s:?}: an upstream URL takes no query or fragment"));
    }
    let base_path = url.path().trim_end_matches('/').to_string();
    Ok(UpstreamTarget {
        url,
        addr,
        tls,
        host,
        authority,
        base_path,
    })
}
