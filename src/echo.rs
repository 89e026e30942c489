//! The echo upstream of `keygate demo` and the tests: it answers with what it received.
//!
//! `GET /anything?x=1` returns JSON `{method, path, query, headers, body_bytes, body_sha256}`;
//! `?echo=body` streams the request body back instead; `?delay_ms=N` waits first; `?status=N`
//! sets the status. It counts the requests that reached it.

use crate::loopback::{self, Served};
use http_body_util::BodyExt;
use hyper::Response;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running echo server.
pub struct EchoServer {
    served: Served,
    calls: Arc<AtomicU64>,
}

impl EchoServer {
    /// Start on `127.0.0.1:0` on the current runtime.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("literal")).await
    }

    /// Start on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let handler: loopback::Handler = Arc::new(move |req| {
            c.fetch_add(1, Ordering::Relaxed);
            Box::pin(handle(req))
        });
        Ok(Self {
            served: loopback::serve(addr, handler).await?,
            calls,
        })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// Requests received so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn handle(req: hyper::Request<hyper::body::Incoming>) -> Response<loopback::Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(ms) = query_param(&query, "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let status = query_param(&query, "status")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(200);
    if query_param(&query, "echo") == Some("body") {
        let body = req.into_body().boxed();
        return Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .unwrap_or_default();
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut body = req.into_body();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut n = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            n += data.len();
            ctx.update(data);
        }
    }
    let sha: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    loopback::json(
        status,
        &serde_json::json!({
            "method": method, "path": path, "query": query, "headers": headers,
            "body_bytes": n, "body_sha256": sha,
        }),
    )
}
