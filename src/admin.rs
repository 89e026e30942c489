//! The admin listener: `/healthz` (the process answers), `/readyz` (every key manager can
//! validate tokens; the JSON body says which cannot and why) and `/metrics` (Prometheus text).
//! It listens on loopback by default: metrics name APIs and key managers.

use crate::metrics::Metrics;
use crate::runtime::Runtime;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;
use std::sync::Arc;

/// The admin app.
pub struct AdminApp {
    /// The runtime whose readiness is reported (follows reloads).
    pub runtime: Arc<arc_swap::ArcSwap<Runtime>>,
    /// The metrics served.
    pub metrics: Arc<Metrics>,
}

#[derive(Serialize)]
struct KmReadiness {
    name: String,
    ready: bool,
    keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    key_managers: Vec<KmReadiness>,
}

/// Readiness of a runtime.
pub fn readiness(rt: &Runtime) -> (bool, Vec<u8>) {
    let kms: Vec<KmReadiness> = rt
        .auth
        .key_managers()
        .iter()
        .map(|km| match km.readiness() {
            Ok(keys) => KmReadiness {
                name: km.name().to_string(),
                ready: true,
                keys,
                reason: None,
            },
            Err(reason) => KmReadiness {
                name: km.name().to_string(),
                ready: false,
                keys: 0,
                reason: Some(reason),
            },
        })
        .collect();
    let ready = kms.iter().all(|k| k.ready);
    let body = serde_json::to_vec(&Readiness {
        ready,
        key_managers: kms,
    })
    .unwrap_or_default();
    (ready, body)
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => response(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let (ready, body) = readiness(&self.runtime.load());
                response(if ready { 200 } else { 503 }, "application/json", body)
            }
            "/metrics" => {
                let rt = self.runtime.load_full();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                for km in rt.auth.key_managers() {
                    if let crate::auth::key_manager::KeySource::Jwks(store) = &km.keys {
                        if let Some(t) = store.status().last_success {
                            self.metrics
                                .jwks_age
                                .with_label_values(&[km.name()])
                                .set(now.saturating_sub(t) as i64);
                        }
                    }
                }
                self.metrics
                    .verdict_cache_entries
                    .set(rt.auth.cached_verdicts() as i64);
                let per_km = rt.auth.cached_introspections().await;
                for (km, n) in rt.auth.key_managers().iter().zip(per_km) {
                    self.metrics
                        .introspection_cache_entries
                        .with_label_values(&[km.name()])
                        .set(n as i64);
                }
                response(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            _ => response(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
