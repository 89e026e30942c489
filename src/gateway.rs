//! The one file that knows Pingora's phases. Each phase delegates to the stage module named for
//! what it does; refusals become responses here, through [`Rejection`].
//!
//! | Pingora phase             | stage                                                        |
//! |---------------------------|--------------------------------------------------------------|
//! | `request_filter`          | `admission`: route → bearer → auth → authz (Permit)          |
//! | `upstream_peer`           | `upstream::peer(&Permit)`                                     |
//! | `upstream_request_filter` | `upstream::rewrite` + `enrich::apply(&Permit)`                |
//! | `fail_to_proxy`           | upstream failures → 502/504 fault                             |
//! | `logging`                 | `metrics`                                                     |
//!
//! Rejections are written directly (header + body) because Pingora's `respond_error` closes the
//! connection and `response_filter` does not run for responses we write ourselves.

use crate::admission::{self, Trail};
use crate::authz::Permit;
use crate::enrich;
use crate::error::{Rejection, UpstreamError};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::upstream;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use std::sync::Arc;

/// The proxy.
pub struct Gateway {
    /// The current configuration snapshot.
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Write one access-log line per request (target `keygate::access`).
    pub access_log: bool,
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    runtime: Option<Arc<Runtime>>,
    permit: Option<Permit>,
    trail: Trail,
    outcome: Option<&'static str>,
    started: Option<std::time::Instant>,
    upstream_sent: Option<std::time::Instant>,
}

/// Write a rejection as a complete response; `close` announces that the connection ends after
/// it (so a client does not reuse a connection Pingora is about to close).
async fn write_rejection(
    session: &mut Session,
    rejection: &Rejection,
    close: bool,
) -> pingora::Result<()> {
    let body = rejection.body();
    let mut resp = ResponseHeader::build(rejection.status(), Some(5))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    if let Some(challenge) = rejection.www_authenticate() {
        resp.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    if let Some(secs) = rejection.retry_after() {
        resp.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    if close {
        // Pingora writes the Connection header from the session's keep-alive state: turn it off
        // so the client is told, rather than finding a closed socket on its next request.
        session.set_keepalive(None);
        resp.insert_header(http::header::CONNECTION, "close")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Lowercase hex of the token-hash prefix, written into `out` (no allocation per log line).
fn hex_prefix<'a>(h: &[u8; 4], out: &'a mut [u8; 8]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in h.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    std::str::from_utf8(out).unwrap_or("")
}

fn internal(msg: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InternalError, msg)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        ctx.started = Some(std::time::Instant::now());
        let rt = self.runtime.load_full();
        let req = session.req_header();
        let result = admission::admit(
            &rt,
            &req.method,
            req.uri.path(),
            &req.headers,
            &mut ctx.trail,
        )
        .await;
        ctx.runtime = Some(rt);
        match result {
            Ok(permit) => {
                ctx.permit = Some(permit);
                Ok(false)
            }
            Err(rejection) => {
                ctx.outcome = Some(rejection.code());
                if let Rejection::Auth(e) = &rejection {
                    log::debug!("request refused: {e}");
                }
                write_rejection(session, &rejection, false).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let (Some(rt), Some(permit)) = (&ctx.runtime, &ctx.permit) else {
            return Err(internal("upstream_peer without a permit"));
        };
        let api = &rt.apis[permit.route().api].def;
        Ok(Box::new(upstream::peer(permit, api)))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let (Some(rt), Some(permit)) = (&ctx.runtime, &ctx.permit) else {
            return Err(internal("upstream request without a permit"));
        };
        let api = &rt.apis[permit.route().api].def;
        ctx.upstream_sent = Some(std::time::Instant::now());
        upstream::rewrite(req, permit, api, ctx.trail.normalised_path.as_deref())?;
        enrich::apply(req, permit, api, &rt.header_names)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let (Some(sent), Some(rt), Some(api)) = (ctx.upstream_sent, &ctx.runtime, ctx.trail.api)
        {
            self.metrics
                .upstream_duration
                .with_label_values(&[rt.apis[api].def.name.as_str()])
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // The source first: a slow client upload times out too, and that is not the upstream's.
        let upstream_error = match (e.esource(), e.etype()) {
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => Some(UpstreamError::TimedOut),
            (ErrorSource::Upstream, _) => Some(UpstreamError::Unreachable),
            _ => None,
        };
        let code = match upstream_error {
            Some(ue) if session.response_written().is_none() => {
                if let (Some(rt), Some(api)) = (&ctx.runtime, ctx.trail.api) {
                    let kind = match ue {
                        UpstreamError::TimedOut => "timeout",
                        UpstreamError::Unreachable => "unreachable",
                    };
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[rt.apis[api].def.name.as_str(), kind])
                        .inc();
                }
                let rejection = Rejection::from(ue);
                ctx.outcome = Some(rejection.code());
                log::warn!("upstream failure: {e}");
                if write_rejection(session, &rejection, true).await.is_err() {
                    0
                } else {
                    rejection.status()
                }
            }
            _ => {
                let code = match e.esource() {
                    ErrorSource::Downstream => 0,
                    _ if session.response_written().is_some() => 0,
                    _ => 500,
                };
                if code > 0 {
                    let _ = session.respond_error(code).await;
                }
                code
            }
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (api, resource) = match (&ctx.runtime, ctx.trail.api) {
            (Some(rt), Some(i)) => match rt.apis.get(i) {
                Some(a) => (
                    a.def.name.as_str(),
                    ctx.trail
                        .resource
                        .and_then(|r| a.def.resources.get(r))
                        .map_or("-", |r| r.target.as_str()),
                ),
                None => ("-", "-"),
            },
            _ => ("-", "-"),
        };
        let outcome = ctx
            .outcome
            .unwrap_or(if ctx.permit.is_some() { "ok" } else { "error" });
        let mut buf = itoa::Buffer::new();
        self.metrics
            .requests
            .with_label_values(&[api, resource, outcome, buf.format(status)])
            .inc();
        if self.access_log {
            let req = session.req_header();
            let latency_us = ctx.started.map_or(0, |t| t.elapsed().as_micros() as u64);
            let mut hex = [0u8; 8];
            let token = match ctx.trail.token_hash {
                Some(h) => hex_prefix(&h, &mut hex),
                None => "",
            };
            let km = match (&ctx.runtime, ctx.trail.key_manager) {
                (Some(rt), Some(id)) => rt.auth.key_manager_name(id).unwrap_or("-"),
                _ => "-",
            };
            tracing::info!(
                target: "keygate::access",
                method = %req.method,
                api,
                resource,
                status,
                code = outcome,
                key_manager = km,
                latency_us,
                token,
                "request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_prefix_is_lowercase_hex() {
        let mut out = [0u8; 8];
        assert_eq!(
            super::hex_prefix(&[0x00, 0x9f, 0xa0, 0xff], &mut out),
            "009fa0ff"
        );
    }
}
