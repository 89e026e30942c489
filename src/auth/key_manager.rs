//! A key manager at run time: its configuration, its keys and its pre-built validations.

use super::discovery::Discovered;
use super::introspection::Introspector;
use super::jwks::JwksStore;
use super::jwt;
use super::keys::KeySet;
use crate::config::{Certificates, KeyManagerConfig, ValidationMethod};
use crate::metrics::Metrics;
use arc_swap::{ArcSwap, ArcSwapOption};
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
    /// Unique per instance (a reload that keeps the configuration keeps the instance).
    pub id: u64,
    /// Set once its refreshers run.
    pub refreshers_started: std::sync::atomic::AtomicBool,
    /// Its configuration.
    pub config: KeyManagerConfig,
    /// The `X-Auth-Key-Manager` value.
    pub name_header: http::HeaderValue,
    /// Its keys.
    pub keys: KeySource,
    /// `keygate_token_validation_seconds{key_manager, path="cached"}`, resolved once: the
    /// cache-hit path observes it on every request.
    pub cached_timer: prometheus::Histogram,
    /// Its introspection client, when it has an endpoint and credentials.
    pub introspector: Option<Arc<Introspector>>,
    validations: ArcSwap<HashMap<Algorithm, Validation>>,
    issuer: ArcSwap<String>,
    discovered: ArcSwapOption<Discovered>,
    discovery_error: ArcSwapOption<String>,
    http: reqwest::Client,
}

fn validations_for(config: &KeyManagerConfig, issuer: &str) -> HashMap<Algorithm, Validation> {
    ALGS.iter()
        .map(|&alg| {
            (
                alg,
                jwt::validation(
                    alg,
                    issuer,
                    &config.audiences,
                    config.clock_skew.as_secs(),
                    config.require_exp,
                ),
            )
        })
        .collect()
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
        config: KeyManagerConfig,
        http: &reqwest::Client,
        bg: &tokio::runtime::Handle,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let jwks = |url: Option<url::Url>| {
            KeySource::Jwks(Arc::new(JwksStore::new(
                &config.name,
                url,
                http.clone(),
                config.http_timeout,
                bg.clone(),
                config.jwks_min_refresh_interval,
                config.unknown_kid_ttl,
                metrics.clone(),
            )))
        };
        let keys = match &config.certificates {
            Some(Certificates::Pem(text)) => KeySource::Static(Arc::new(KeySet::from_pem(text)?)),
            Some(Certificates::Jwks(url)) => jwks(Some(url.clone())),
            // Discovery will say where the JWKS is.
            None if config.well_known_endpoint.is_some()
                && config.validation == ValidationMethod::SelfValidateJwt =>
            {
                jwks(None)
            }
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
        let validations = ArcSwap::from_pointee(validations_for(&config, &config.issuer));
        let issuer = ArcSwap::from_pointee(config.issuer.clone());
        let introspector =
            Introspector::new(id, &config, http.clone(), bg.clone(), metrics.clone()).map(Arc::new);
        let name_header = http::HeaderValue::from_str(&config.name).map_err(|_| {
            format!(
                "key manager name {:?} cannot be sent in a header",
                config.name
            )
        })?;
        let cached_timer = metrics
            .validation
            .with_label_values(&[config.name.as_str(), "cached"]);
        Ok(Self {
            id,
            cached_timer,
            refreshers_started: std::sync::atomic::AtomicBool::new(false),
            config,
            name_header,
            keys,
            introspector,
            validations,
            issuer,
            discovered: ArcSwapOption::empty(),
            discovery_error: ArcSwapOption::empty(),
            http: http.clone(),
        })
    }

    /// The issuer it accepts: configured, or discovered (empty until then).
    pub fn issuer(&self) -> Arc<String> {
        self.issuer.load_full()
    }

    /// Fetch the discovery document once and apply it: fill what the configuration left unset.
    pub async fn discover(&self) -> Result<(), String> {
        let Some(url) = &self.config.well_known_endpoint else {
            return Ok(());
        };
        match super::discovery::fetch(&self.http, url, self.config.http_timeout).await {
            Ok(d) => {
                if self.config.issuer.is_empty() {
                    self.validations
                        .store(Arc::new(validations_for(&self.config, &d.issuer)));
                    self.issuer.store(Arc::new(d.issuer.clone()));
                } else if self.config.issuer != d.issuer {
                    log::warn!(
                        "key manager {}: discovery says issuer {:?}, the configured {:?} is kept",
                        self.name(),
                        d.issuer,
                        self.config.issuer
                    );
                }
                if let (KeySource::Jwks(store), None) = (&self.keys, &self.config.certificates) {
                    if let Some(u) = Discovered::url(&d.jwks_uri) {
                        store.set_url(u);
                    }
                }
                // A configured endpoint always wins; a discovered one follows the document.
                if let (Some(i), None, Some(u)) = (
                    &self.introspector,
                    &self.config.introspection_endpoint,
                    Discovered::url(&d.introspection_endpoint),
                ) {
                    i.set_discovered_endpoint(u);
                }
                log::info!("key manager {}: discovery document loaded", self.name());
                self.discovered.store(Some(Arc::new(d)));
                self.discovery_error.store(None);
                Ok(())
            }
            Err(e) => {
                log::warn!("key manager {}: discovery failed: {e}", self.name());
                self.discovery_error.store(Some(Arc::new(e.clone())));
                Err(e)
            }
        }
    }

    /// The last discovery document, if any.
    pub fn discovered(&self) -> Option<Arc<Discovered>> {
        self.discovered.load_full()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The validations per supported algorithm (swapped when discovery sets the issuer).
    pub fn validations(&self) -> arc_swap::Guard<Arc<HashMap<Algorithm, Validation>>> {
        self.validations.load()
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
        if self.config.well_known_endpoint.is_some() && self.discovered.load().is_none() {
            let why = self
                .discovery_error
                .load_full()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(format!("discovery document: {why}"));
        }
        if self.config.validation == ValidationMethod::Introspect {
            return match &self.introspector {
                Some(i) => i.health().map(|_| 0),
                None => Err("no introspection endpoint or credentials".to_string()),
            };
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
