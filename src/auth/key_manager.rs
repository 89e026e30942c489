//! A key manager at run time: its configuration, its keys and its pre-built validations.

use super::introspection::Introspector;
use super::jwks::JwksStore;
use super::jwt;
use super::keys::KeySet;
use crate::config::{Certificates, KeyManagerConfig};
use crate::metrics::Metrics;
use jsonwebtoken::{Algorithm, Validation};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a key manager's keys come from.
pub enum KeySource {
    /// PEM from the config: always present.
    Static(Arc<KeySet>),
    /// A JWKS URL: present once fetched.
    Jwks(Arc<JwksStore>),
    /// No certificates configured.
    None,
}

/// A key manager.
pub struct KeyManager {
    /// Position in config order.
    pub index: usize,
    /// Its configuration.
    pub config: KeyManagerConfig,
    /// The `X-Auth-Key-Manager` value.
    pub name_header: http::HeaderValue,
    /// Its keys.
    pub keys: KeySource,
    /// Its introspection client, when it has an endpoint and credentials.
    pub introspector: Option<Arc<Introspector>>,
    validations: HashMap<Algorithm, Validation>,
}

const ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl KeyManager {
    /// Build one. JWKS stores start empty; [`crate::auth::Authenticator::start_refreshers`]
    /// fills them.
    pub fn new(
        index: usize,
        config: KeyManagerConfig,
        http: &reqwest::Client,
        bg: &tokio::runtime::Handle,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let keys = match &config.certificates {
            Some(Certificates::Pem(text)) => KeySource::Static(Arc::new(KeySet::from_pem(text)?)),
            Some(Certificates::Jwks(url)) => KeySource::Jwks(Arc::new(JwksStore::new(
                &config.name,
                url.clone(),
                http.clone(),
                config.http_timeout,
                bg.clone(),
                config.jwks_min_refresh_interval,
                config.unknown_kid_ttl,
                metrics.clone(),
            ))),
            None => KeySource::None,
        };
        if let KeySource::Static(k) = &keys {
            metrics
                .jwks_keys
                .with_label_values(&[&config.name])
                .set(k.len() as i64);
            metrics
                .key_manager_ready
                .with_label_values(&[&config.name])
                .set(1);
        } else {
            metrics
                .key_manager_ready
                .with_label_values(&[&config.name])
                .set(0);
        }
        let validations = ALGS
            .iter()
            .map(|&alg| {
                (
                    alg,
                    jwt::validation(
                        alg,
                        &config.issuer,
                        &config.audiences,
                        config.clock_skew.as_secs(),
                        config.require_exp,
                    ),
                )
            })
            .collect();
        let introspector =
            Introspector::new(index, &config, http.clone(), bg.clone(), metrics.clone())
                .map(Arc::new);
        let name_header = http::HeaderValue::from_str(&config.name).map_err(|_| {
            format!(
                "key manager name {:?} cannot be sent in a header",
                config.name
            )
        })?;
        Ok(Self {
            index,
            config,
            name_header,
            keys,
            introspector,
            validations,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The validation for a supported algorithm.
    pub fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations.get(&alg)
    }

    /// The current keys, `None` when none have arrived yet.
    pub fn current_keys(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            KeySource::Static(k) => Some(k.clone()),
            KeySource::Jwks(s) => s.current(),
            KeySource::None => None,
        }
    }

    /// Ready to validate? And if not, why. An introspecting key manager is ready once
    /// configured: its endpoint is asked per token, and an outage shows as 503s and metrics.
    pub fn readiness(&self) -> Result<usize, String> {
        if self.config.validation == crate::config::ValidationMethod::Introspect {
            return Ok(0);
        }
        match &self.keys {
            KeySource::Static(k) => Ok(k.len()),
            KeySource::Jwks(s) => {
                let st = s.status();
                if st.keys > 0 {
                    Ok(st.keys)
                } else {
                    Err(st
                        .last_error
                        .unwrap_or_else(|| "JWKS not fetched yet".to_string()))
                }
            }
            KeySource::None => Err("no certificates configured".to_string()),
        }
    }
}
