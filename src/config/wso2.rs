//! A key manager given as WSO2's own export: the Admin REST `KeyManagerDTO` JSON
//! (`wellKnownEndpoint`, `issuer`, `certificates`, `enableSelfValidationJWT`, `tokenValidation`,
//! `additionalProperties` with the Asgardeo connector keys...) or the gateway event shape whose
//! `additionalProperties` carry the internal names (`self_validate_jwt`, `certificate_type`...).
//! Fields set in keygate's YAML win over the export (secrets are masked in exports).

use super::file::{CertificatesFile, ConnectorFile, KeyManagerFile};
use serde_json::Value;

fn s(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A masked secret as exports write it.
fn masked(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c == '*')
}

fn pem(value: String) -> String {
    // The Admin REST API stores PEM URL-encoded.
    if value.contains('%') {
        percent_encoding::percent_decode_str(&value)
            .decode_utf8_lossy()
            .into_owned()
    } else {
        value
    }
}

/// Fill every field `km` leaves unset from the export `doc`.
pub fn merge(km: &KeyManagerFile, doc: &Value) -> KeyManagerFile {
    let props = doc
        .get("additionalProperties")
        .cloned()
        .unwrap_or(Value::Null);
    let p = |k: &str| s(props.get(k));
    let top = |k: &str| s(doc.get(k));
    let mut out = km.clone();
    out.name = out.name.or_else(|| top("name"));
    out.kind = out.kind.or_else(|| {
        top("type").map(|t| {
            if t.eq_ignore_ascii_case("asgardeo") {
                "asgardeo".into()
            } else {
                "oidc".into()
            }
        })
    });
    out.enabled = out
        .enabled
        .or_else(|| doc.get("enabled").and_then(Value::as_bool));
    if out.kind.as_deref() == Some("asgardeo") {
        out.organization = out.organization.or_else(|| p("org_name"));
    }
    out.issuer = out.issuer.or_else(|| top("issuer")).or_else(|| p("issuer"));
    out.certificates = out.certificates.or_else(|| {
        let (kind, value) = match doc.get("certificates") {
            Some(c) => (s(c.get("type")), s(c.get("value"))),
            None => (p("certificate_type"), p("certificate_value")),
        };
        let value = value.or_else(|| p("jwks_endpoint"))?;
        let kind = kind.unwrap_or_else(|| "JWKS".into());
        let value = if kind.eq_ignore_ascii_case("PEM") {
            pem(value)
        } else {
            value
        };
        Some(CertificatesFile {
            kind: kind.to_uppercase(),
            value,
        })
    });
    // Discovery is only needed when the export did not already carry what it would fill.
    if out.issuer.is_none() || out.certificates.is_none() {
        out.well_known_endpoint = out
            .well_known_endpoint
            .or_else(|| top("wellKnownEndpoint"))
            .or_else(|| p("well_known_endpoint"));
    }
    out.introspection_endpoint = out
        .introspection_endpoint
        .or_else(|| top("introspectionEndpoint"))
        .or_else(|| p("introspection_endpoint"));
    out.token_endpoint = out
        .token_endpoint
        .or_else(|| top("tokenEndpoint"))
        .or_else(|| p("token_endpoint"));
    out.token_validation_method = out.token_validation_method.or_else(|| {
        let self_validate = doc
            .get("enableSelfValidationJWT")
            .and_then(Value::as_bool)
            .or_else(|| {
                props
                    .get("self_validate_jwt")
                    .and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s == "true")))
            })
            .unwrap_or(true);
        Some(
            if self_validate {
                "self_validate_jwt"
            } else {
                "introspect"
            }
            .into(),
        )
    });
    out.client_id = out
        .client_id
        .or_else(|| p("mgmt_client_id"))
        .or_else(|| p("client_id"));
    out.client_secret = out.client_secret.or_else(|| {
        p("mgmt_client_secret")
            .or_else(|| p("client_secret"))
            .filter(|v| !masked(v))
    });
    out.consumer_key_claim = out
        .consumer_key_claim
        .or_else(|| top("consumerKeyClaim"))
        .or_else(|| p("consumer_key_claim"));
    out.scopes_claim = out
        .scopes_claim
        .or_else(|| top("scopesClaim"))
        .or_else(|| p("scopes_claim"));
    if out.token_handling.is_empty() {
        let list = doc
            .get("tokenValidation")
            .cloned()
            .or_else(|| p("token_format_string").and_then(|t| serde_json::from_str(&t).ok()));
        if let Some(Value::Array(entries)) = list {
            out.token_handling = entries
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "type": e.get("type").cloned().unwrap_or(Value::Null),
                        "value": e.get("value").cloned().unwrap_or(Value::Null),
                        "enabled": e.get("enable").or_else(|| e.get("enabled")).cloned().unwrap_or(Value::Bool(true)),
                    })
                })
                .collect();
        }
    }
    if out.connector.is_none()
        && (p("APIM_GLOBAL_SCOPES").is_some() || p("asgardeo_roles_endpoint").is_some())
    {
        let create_roles = props.get("asgardeo_role_creation").map(|v| match v {
            Value::Bool(b) => *b,
            Value::String(s) => s.eq_ignore_ascii_case("enable") || s == "true",
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some("Enable")),
            _ => false,
        });
        out.connector = Some(ConnectorFile {
            roles_endpoint: p("asgardeo_roles_endpoint"),
            api_resource_management_endpoint: p("asgardeo_api_resource_management_endpoint"),
            global_scopes_resource: p("APIM_GLOBAL_SCOPES"),
            create_roles,
            create_global_resource: None,
            protected_scopes: Vec::new(),
        });
    }
    out.wso2_export = None;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dto_shape_maps_onto_our_fields() {
        let doc = serde_json::json!({
            "name": "AsgardeoKM", "type": "Asgardeo", "enabled": true,
            "wellKnownEndpoint": "https://api.asgardeo.io/t/acme/oauth2/token/.well-known/openid-configuration",
            "issuer": "https://api.asgardeo.io/t/acme/oauth2/token",
            "certificates": {"type": "PEM", "value": "-----BEGIN%20PUBLIC%20KEY-----%0Aabc%0A-----END%20PUBLIC%20KEY-----"},
            "enableSelfValidationJWT": false, "consumerKeyClaim": "azp", "scopesClaim": "scope",
            "tokenValidation": [{"id": 1, "enable": true, "type": "REFERENCE", "value": "^[0-9a-f-]{36}$"}],
            "additionalProperties": {"org_name": "acme", "mgmt_client_id": "mgmt", "mgmt_client_secret": "*****",
                "APIM_GLOBAL_SCOPES": "APIM_GLOBAL_SCOPES", "asgardeo_role_creation": "Enable"}
        });
        let km = merge(
            &KeyManagerFile {
                client_secret: Some("real".into()),
                ..Default::default()
            },
            &doc,
        );
        assert_eq!(km.name.as_deref(), Some("AsgardeoKM"));
        assert_eq!(km.kind.as_deref(), Some("asgardeo"));
        assert_eq!(km.organization.as_deref(), Some("acme"));
        assert!(
            km.well_known_endpoint.is_none(),
            "issuer and certificates are present: no discovery"
        );
        let c = km.certificates.unwrap();
        assert_eq!(c.kind, "PEM");
        assert!(c.value.starts_with("-----BEGIN PUBLIC KEY-----\nabc"));
        assert_eq!(km.token_validation_method.as_deref(), Some("introspect"));
        assert_eq!(
            (km.client_id.as_deref(), km.client_secret.as_deref()),
            (Some("mgmt"), Some("real"))
        );
        assert_eq!(km.token_handling[0]["type"], "REFERENCE");
        assert_eq!(km.connector.unwrap().create_roles, Some(true));
    }

    #[test]
    fn event_shape_and_masked_secrets() {
        let doc = serde_json::json!({"name": "IS", "type": "WSO2-IS", "additionalProperties": {
            "issuer": "https://is/oauth2/token", "certificate_type": "JWKS", "certificate_value": "https://is/oauth2/jwks",
            "self_validate_jwt": "true", "client_secret": "******"}});
        let km = merge(&KeyManagerFile::default(), &doc);
        assert_eq!(km.kind.as_deref(), Some("oidc"));
        assert_eq!(km.certificates.unwrap().value, "https://is/oauth2/jwks");
        assert_eq!(
            km.token_validation_method.as_deref(),
            Some("self_validate_jwt")
        );
        assert!(km.client_secret.is_none());
    }
}
