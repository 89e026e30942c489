//! The main configuration file as written by people: serde surface structs only.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Defaults live in [`super`]'s validation step, not here, so that "was it set?" stays
//! visible (an Asgardeo key manager fills unset endpoints from its organization).

// The fields are the YAML keys, each documented with its default in config/keygate.yaml.
#![allow(missing_docs)]

use serde::Deserialize;
use std::time::Duration;

/// A duration written as `30s`, `15m`, `1h 30m` (humantime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// `config/keygate.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainFile {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    #[serde(default)]
    pub key_managers: Vec<KeyManagerFile>,
    pub apis: Option<Vec<String>>,
    pub upstream_headers: Option<UpstreamHeadersFile>,
    pub verdict_cache: Option<VerdictCacheFile>,
    pub introspection_cache: Option<IntrospectionCacheFile>,
    pub shutdown_grace: Option<HumanDuration>,
    pub upstream_ca_file: Option<String>,
    pub log_format: Option<String>,
    pub upgrade_sock: Option<String>,
    pub access_log: Option<bool>,
}

/// Names of the identity headers sent upstream.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHeadersFile {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Option<String>,
    pub key_manager: Option<String>,
}

/// Bounds of the JWT verdict cache.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerdictCacheFile {
    pub max_entries: Option<u64>,
}

/// One key manager block.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct KeyManagerFile {
    pub wso2_export: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub enabled: Option<bool>,
    pub organization: Option<String>,
    pub base_url: Option<String>,
    pub well_known_endpoint: Option<String>,
    pub issuer: Option<String>,
    pub certificates: Option<CertificatesFile>,
    pub introspection_endpoint: Option<String>,
    pub introspection_auth: Option<String>,
    pub token_endpoint: Option<String>,
    pub token_validation_method: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub consumer_key_claim: Option<String>,
    pub scopes_claim: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub clock_skew: Option<HumanDuration>,
    #[serde(default)]
    pub token_handling: Vec<serde_json::Value>,
    pub connector: Option<ConnectorFile>,
    pub jwks_refresh_interval: Option<HumanDuration>,
    pub jwks_min_refresh_interval: Option<HumanDuration>,
    pub unknown_kid_ttl: Option<HumanDuration>,
    pub http_timeout: Option<HumanDuration>,
    pub require_exp: Option<bool>,
    pub cache_max_ttl: Option<HumanDuration>,
    pub negative_ttl: Option<HumanDuration>,
}

/// Bounds of the introspection cache.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionCacheFile {
    pub max_entries: Option<u64>,
}

/// `certificates: {type: JWKS|PEM, value: ...}` as in WSO2's key manager form.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CertificatesFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The Asgardeo connector settings used by `keygate sync` (kept and validated here; the data
/// plane does not use them).
#[derive(Debug, Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    pub roles_endpoint: Option<String>,
    pub api_resource_management_endpoint: Option<String>,
    pub global_scopes_resource: Option<String>,
    pub create_roles: Option<bool>,
    pub create_global_resource: Option<bool>,
    #[serde(default)]
    pub protected_scopes: Vec<String>,
}
