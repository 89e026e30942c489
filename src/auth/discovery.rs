//! OIDC discovery (`/.well-known/openid-configuration`): the document that fills a key
//! manager's issuer, JWKS URI and endpoints when the configuration leaves them unset, as WSO2's
//! Admin Portal "Import" does (reference §4.3). Fetched at start with backoff and refreshed.

use serde::Deserialize;
use std::time::Duration;

/// Largest discovery document accepted.
const MAX_BYTES: usize = 256 * 1024;

/// What keygate reads from a discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovered {
    /// `issuer` (required).
    pub issuer: String,
    /// `jwks_uri`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// `introspection_endpoint`.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// `token_endpoint`.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// `revocation_endpoint`.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// `registration_endpoint` (DCR).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// `grant_types_supported`.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
}

impl Discovered {
    /// Parse and check a document.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let d: Discovered =
            serde_json::from_slice(bytes).map_err(|e| format!("not a discovery document: {e}"))?;
        if d.issuer.trim().is_empty() {
            return Err("discovery document has an empty issuer".to_string());
        }
        for (name, v) in [
            ("jwks_uri", &d.jwks_uri),
            ("introspection_endpoint", &d.introspection_endpoint),
            ("token_endpoint", &d.token_endpoint),
        ] {
            if let Some(u) = v {
                let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(format!("{name} {u:?} is not an http(s) URL"));
                }
            }
        }
        Ok(d)
    }

    /// Refuse endpoints that would downgrade the transport: a document fetched over https may
    /// not send keys, tokens or client credentials over plain http, except to a loopback host
    /// (a sidecar's local provider). A document read over http (the operator chose http) may.
    pub fn check_transport(&self, well_known: &url::Url) -> Result<(), String> {
        if well_known.scheme() != "https" {
            return Ok(());
        }
        for (name, v) in [
            ("jwks_uri", &self.jwks_uri),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("token_endpoint", &self.token_endpoint),
        ] {
            if let Some(u) = Self::url(v) {
                if u.scheme() == "http" && !is_loopback(&u) {
                    return Err(format!(
                        "{name} is plain http in a document served over https (only loopback \
                         hosts may be http)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A URL field as a `Url` (already checked by [`Discovered::parse`]).
    pub fn url(v: &Option<String>) -> Option<url::Url> {
        v.as_deref().and_then(|u| url::Url::parse(u).ok())
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Fetch and parse a discovery document, refusing endpoints that downgrade its transport.
pub async fn fetch(
    http: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
) -> Result<Discovered, String> {
    let body =
        super::get_capped(http, url.clone(), timeout, MAX_BYTES, "discovery document").await?;
    let d = Discovered::parse(&body)?;
    d.check_transport(url)?;
    Ok(d)
}

/// `keygate import-km`: a ready key manager YAML block (a `key_managers` list item) from a
/// discovery document, like the WSO2 Admin Portal's Import button. `kind` is `asgardeo` or
/// `oidc`; `None` picks asgardeo when the URL has Asgardeo's `/t/<org>/` shape.
pub fn key_manager_yaml(
    d: &Discovered,
    well_known: &url::Url,
    name: Option<&str>,
    kind: Option<&str>,
) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let path = well_known.path();
    let tenant = path.find("/t/").map(|i| {
        let org = path[i + 3..].split('/').next().unwrap_or("").to_string();
        let base = format!("{}{}", &well_known[..url::Position::BeforePath], &path[..i]);
        (org, base)
    });
    let asgardeo = match kind {
        Some(k) => k == "asgardeo",
        None => tenant.is_some(),
    };
    let default_name = match (&tenant, asgardeo) {
        (Some((org, _)), true) => format!("Asgardeo-{org}"),
        _ => well_known.host_str().unwrap_or("km").to_string(),
    };
    let mut out = String::new();
    out.push_str(&format!("  # imported from {well_known}\n"));
    out.push_str(&format!("  - name: {}\n", q(name.unwrap_or(&default_name))));
    if let (true, Some((org, base))) = (asgardeo, &tenant) {
        out.push_str("    type: asgardeo\n");
        out.push_str(&format!("    organization: {}\n", q(org)));
        out.push_str(&format!("    base_url: {}\n", q(base)));
    } else {
        out.push_str("    type: oidc\n");
    }
    out.push_str(&format!("    issuer: {}\n", q(&d.issuer)));
    if let Some(j) = &d.jwks_uri {
        out.push_str(&format!(
            "    certificates: {{type: JWKS, value: {}}}\n",
            q(j)
        ));
    }
    if let Some(i) = &d.introspection_endpoint {
        out.push_str(&format!("    introspection_endpoint: {}\n", q(i)));
    }
    if let Some(t) = &d.token_endpoint {
        out.push_str(&format!("    token_endpoint: {}\n", q(t)));
    }
    out.push_str(
        "    token_validation_method: self_validate_jwt   # or introspect (\"Use introspect\")\n",
    );
    if asgardeo {
        out.push_str("    consumer_key_claim: azp\n");
    }
    out.push_str("    scopes_claim: scope\n");
    out.push_str("    # client_id: ${KM_CLIENT_ID}          # for opaque tokens (introspection) and keygate sync\n");
    out.push_str("    # client_secret: ${KM_CLIENT_SECRET}\n");
    out.push_str(&format!("    # well_known_endpoint: {}   # re-read the endpoints at start and every jwks_refresh_interval\n", q(well_known.as_str())));
    if let Some(r) = &d.revocation_endpoint {
        out.push_str(&format!("    # revocation endpoint: {r}\n"));
    }
    if !d.grant_types_supported.is_empty() {
        out.push_str(&format!(
            "    # grant types: {}\n",
            d.grant_types_supported.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let d = Discovered::parse(br#"{"issuer":"https://i/oauth2/token","jwks_uri":"https://i/jwks","grant_types_supported":["client_credentials"],"extra":1}"#).unwrap();
        assert_eq!(d.jwks_uri.as_deref(), Some("https://i/jwks"));
        assert!(Discovered::parse(br#"{"issuer":""}"#).is_err());
        assert!(Discovered::parse(br#"{"issuer":"x","jwks_uri":"ftp://x"}"#).is_err());
        assert!(Discovered::parse(b"<html>").is_err());
    }

    #[test]
    fn an_https_document_may_not_point_to_plain_http_except_loopback() {
        let https: url::Url = "https://idp.example/.well-known/openid-configuration"
            .parse()
            .unwrap();
        let http: url::Url = "http://idp.internal/.well-known/openid-configuration"
            .parse()
            .unwrap();
        let doc = |field: &str, u: &str| {
            Discovered::parse(format!(r#"{{"issuer":"i","{field}":"{u}"}}"#).as_bytes()).unwrap()
        };
        for field in ["jwks_uri", "introspection_endpoint", "token_endpoint"] {
            let plain = doc(field, "http://idp.example/x");
            let err = plain.check_transport(&https).unwrap_err();
            assert!(err.contains(field), "{err}");
            assert!(plain.check_transport(&http).is_ok());
            for local in [
                "http://127.0.0.1:9443/x",
                "http://[::1]/x",
                "http://localhost/x",
            ] {
                assert!(doc(field, local).check_transport(&https).is_ok(), "{local}");
            }
            assert!(doc(field, "https://idp.example/x")
                .check_transport(&https)
                .is_ok());
        }
    }
}
