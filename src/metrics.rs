//! Every Prometheus family keygate exports, registered once on a private registry.
//!
//! Labels are bounded by construction: API names and key manager names come from configuration,
//! outcomes are WSO2 codes or fixed words, reasons are [`crate::error::InvalidReason`] labels.
//! Never a raw path, token, subject or client id.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metric families.
pub struct Metrics {
    registry: Registry,
    /// `keygate_requests_total{api, resource, outcome, status}`: resource is the URL template
    /// (`-` when none matched).
    pub requests: IntCounterVec,
    /// `keygate_token_validation_seconds{key_manager, path}`: path is `cached` or `verified`.
    pub validation: HistogramVec,
    /// `keygate_token_rejections_total{key_manager, reason}`.
    pub rejections: IntCounterVec,
    /// `keygate_jwks_fetches_total{key_manager, reason, result}`: reason `start`, `interval`,
    /// `unknown_kid`; result `ok` or `error`.
    pub jwks_fetches: IntCounterVec,
    /// `keygate_jwks_keys{key_manager}`.
    pub jwks_keys: IntGaugeVec,
    /// `keygate_jwks_last_success_timestamp_seconds{key_manager}`.
    pub jwks_last_success: IntGaugeVec,
    /// `keygate_jwks_refresh_cooldown_hits_total{key_manager}`.
    pub jwks_cooldown_hits: IntCounterVec,
    /// `keygate_key_manager_ready{key_manager}`: 1 when it has usable keys.
    pub key_manager_ready: IntGaugeVec,
    /// `keygate_introspection_calls_total{key_manager, result}`: `active`, `inactive`, `error`.
    pub introspection_calls: IntCounterVec,
    /// `keygate_introspection_duration_seconds{key_manager}`.
    pub introspection_duration: HistogramVec,
    /// `keygate_introspection_cache_total{key_manager, result}`: `hit`, `miss`, `coalesced`.
    pub introspection_cache: IntCounterVec,
    /// `keygate_introspection_refreshes_total{key_manager, result}`: background refresh-ahead.
    pub introspection_refreshes: IntCounterVec,
    /// `keygate_introspection_cache_entries{key_manager}`.
    pub introspection_cache_entries: IntGaugeVec,
    /// `keygate_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `keygate_jwks_age_seconds{key_manager}`: seconds since the last successful fetch.
    pub jwks_age: IntGaugeVec,
    /// `keygate_upstream_duration_seconds{api}`: from the request to the upstream's response
    /// header.
    pub upstream_duration: HistogramVec,
    /// `keygate_upstream_errors_total{api, kind}`: `unreachable` or `timeout`.
    pub upstream_errors: IntCounterVec,
    /// `keygate_verdict_cache_entries`.
    pub verdict_cache_entries: prometheus::IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    /// Create and register every family.
    pub fn new() -> Self {
        let r = Registry::new();
        let validation = HistogramVec::new(
            HistogramOpts::new(
                "keygate_token_validation_seconds",
                "Time to turn a bearer token into a principal, by key manager and path (cached, verified)",
            )
            .buckets(vec![
                0.000_001, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                0.005, 0.025, 0.1, 0.5, 2.0,
            ]),
            &["key_manager", "path"],
        )
        .expect("valid metric");
        r.register(Box::new(validation.clone()))
            .expect("registered once");
        let introspection_duration = HistogramVec::new(
            HistogramOpts::new(
                "keygate_introspection_duration_seconds",
                "Latency of introspection calls, by key manager",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["key_manager"],
        )
        .expect("valid metric");
        r.register(Box::new(introspection_duration.clone()))
            .expect("registered once");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "keygate_upstream_duration_seconds",
                "Time from sending to the upstream to its response header, by API",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["api"],
        )
        .expect("valid metric");
        r.register(Box::new(upstream_duration.clone()))
            .expect("registered once");
        let build = gauge(&r, "keygate_build_info", "Build information", &["version"]);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            requests: counter(
                &r,
                "keygate_requests_total",
                "Requests by API, resource template, outcome (ok or WSO2 code) and status",
                &["api", "resource", "outcome", "status"],
            ),
            validation,
            rejections: counter(
                &r,
                "keygate_token_rejections_total",
                "Tokens refused, by key manager and reason",
                &["key_manager", "reason"],
            ),
            jwks_fetches: counter(
                &r,
                "keygate_jwks_fetches_total",
                "JWKS fetches by key manager, reason and result",
                &["key_manager", "reason", "result"],
            ),
            jwks_keys: gauge(
                &r,
                "keygate_jwks_keys",
                "Keys currently loaded",
                &["key_manager"],
            ),
            jwks_last_success: gauge(
                &r,
                "keygate_jwks_last_success_timestamp_seconds",
                "Unix time of the last successful JWKS fetch",
                &["key_manager"],
            ),
            jwks_cooldown_hits: counter(
                &r,
                "keygate_jwks_refresh_cooldown_hits_total",
                "Unknown-kid refreshes refused by the cooldown",
                &["key_manager"],
            ),
            introspection_calls: counter(
                &r,
                "keygate_introspection_calls_total",
                "Introspection calls by key manager and result (active, inactive, error)",
                &["key_manager", "result"],
            ),
            introspection_duration,
            introspection_cache: counter(
                &r,
                "keygate_introspection_cache_total",
                "Introspection cache lookups by key manager and result (hit, miss, coalesced)",
                &["key_manager", "result"],
            ),
            introspection_refreshes: counter(
                &r,
                "keygate_introspection_refreshes_total",
                "Background refresh-ahead introspections by key manager and result",
                &["key_manager", "result"],
            ),
            introspection_cache_entries: gauge(
                &r,
                "keygate_introspection_cache_entries",
                "Entries in the introspection cache, by key manager",
                &["key_manager"],
            ),
            config_reloads: counter(
                &r,
                "keygate_config_reloads_total",
                "Configuration reloads by result (ok, error)",
                &["result"],
            ),
            jwks_age: gauge(
                &r,
                "keygate_jwks_age_seconds",
                "Seconds since the last successful JWKS fetch",
                &["key_manager"],
            ),
            upstream_duration,
            upstream_errors: counter(
                &r,
                "keygate_upstream_errors_total",
                "Upstream failures by API and kind (unreachable, timeout)",
                &["api", "kind"],
            ),
            key_manager_ready: gauge(
                &r,
                "keygate_key_manager_ready",
                "1 when the key manager can validate tokens",
                &["key_manager"],
            ),
            verdict_cache_entries: {
                let g = prometheus::IntGauge::new(
                    "keygate_verdict_cache_entries",
                    "Entries in the JWT verdict cache (stale ones included until read or evicted)",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            registry: r,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
