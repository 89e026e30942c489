//! The upstream leg: enrichment, path rewriting, streaming bodies, failures.

use crate::common::Env;
use keygate::catalog::parse_upstream;
use keygate::server::free_port;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_removed_everywhere() {
    let env = Env::ready().await;
    let spoof = |req: reqwest::RequestBuilder| {
        req.header("X-Auth-Subject", "admin")
            .header("x-auth-client-id", "evil")
            .header("X-AUTH-SCOPES", "orders:admin")
            .header("X-Auth-Key-Manager", "Fake")
    };
    // Authenticated: ours replace theirs.
    let t = env.token(&["orders:read"]);
    let r = env
        .send(spoof(env.http.get(env.url("/orders/v1/5")).bearer_auth(&t)))
        .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-auth-subject"], "demo-client");
    assert_eq!(h["x-auth-client-id"], "demo-client");
    assert_eq!(h["x-auth-scopes"], "orders:read");
    assert_eq!(h["x-auth-key-manager"], "AsgardeoDemo");
    // Anonymous (auth_type None): none at all.
    let r = env
        .send(spoof(env.http.get(env.url("/orders/health"))))
        .await;
    let h = r.json()["headers"].clone();
    for name in [
        "x-auth-subject",
        "x-auth-client-id",
        "x-auth-scopes",
        "x-auth-key-manager",
    ] {
        assert!(h.get(name).is_none(), "{name} leaked: {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_is_forwarded_only_when_the_api_says_so() {
    let env = Env::start_with(|c, _, _| c.apis[0].forward_authorization = true).await;
    env.wait_ready(Duration::from_secs(10)).await;
    let t = env.token(&["orders:read"]);
    let r = env.get("/orders/v1/5", Some(&t)).await;
    assert_eq!(r.json()["headers"]["authorization"], format!("Bearer {t}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mebibytes_stream_both_ways_byte_for_byte() {
    let env = Env::ready().await;
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let t = env.token(&["orders:write"]);
    let r = env
        .send(
            env.http
                .post(env.url("/orders/v1/?echo=body"))
                .bearer_auth(&t)
                .body(body.clone()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(
        r.body.as_ref() == body.as_slice(),
        "body changed on the way"
    );
    // And the upstream's own count of what it received.
    let r = env
        .send(
            env.http
                .post(env.url("/orders/v1"))
                .bearer_auth(&t)
                .body(body.clone()),
        )
        .await;
    assert_eq!(r.json()["body_bytes"], body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_is_504() {
    let closed = free_port().unwrap();
    let env = Env::start_with(|c, _, echo| {
        let mut down = c.apis[0].clone();
        down.name = "Down".into();
        down.context = "/down".into();
        down.upstream = parse_upstream(&format!("http://127.0.0.1:{closed}")).unwrap();
        let mut slow = c.apis[0].clone();
        slow.name = "Slow".into();
        slow.context = "/slow".into();
        slow.upstream = parse_upstream(&echo.url()).unwrap();
        slow.timeouts.read = Duration::from_millis(300);
        c.apis.push(down);
        c.apis.push(slow);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let t = env.token(&["orders:read"]);
    let r = env.get("/down/v1/1", Some(&t)).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "101503".to_string()),
        "{}",
        r.text()
    );
    let r = env.get("/slow/v1/1?delay_ms=3000", Some(&t)).await;
    assert_eq!(
        (r.status, r.code()),
        (504, "101504".to_string()),
        "{}",
        r.text()
    );
    assert_eq!(
        env.get("/slow/v1/1?delay_ms=10", Some(&t)).await.status,
        200
    );
    assert_eq!(
        env.metric_reaches(
            r#"keygate_requests_total{api="Down",outcome="101503",resource="/{id}",status="502"}"#,
            1.0
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_hosts_are_rewritten_for_the_upstream() {
    let env = Env::ready().await;
    let t = env.token(&["orders:read", "orders:write"]);
    let r = env.get("/orders/v1/42?x=1&y=a%20b", Some(&t)).await.json();
    assert_eq!(
        (r["path"].as_str(), r["query"].as_str()),
        (Some("/backend/42"), Some("x=1&y=a%20b"))
    );
    assert_eq!(
        r["headers"]["host"],
        env.echo.url().trim_start_matches("http://")
    );
    let r = env.get("/orders/42", Some(&t)).await.json();
    assert_eq!(r["path"], "/backend/42", "default version");
    let r = env
        .send(env.http.post(env.url("/orders/v1")).bearer_auth(&t))
        .await
        .json();
    assert_eq!(r["path"], "/backend");
    assert_eq!(r["method"], "POST");
}

/// An https echo upstream with a certificate from a private CA; returns (url, CA PEM file).
async fn tls_upstream(
    dir: &std::path::Path,
) -> (String, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    use std::sync::Arc;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = serde_json::json!({"tls": true, "path": req.uri().path(),
                        "subject": req.headers().get("x-auth-subject").map(|v| v.to_str().unwrap().to_string())});
                        Ok::<_, std::convert::Infallible>(keygate::loopback::json(200, &body))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}/secure"), ca_file, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_verify_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (url, ca_file, _server) = tls_upstream(dir.path()).await;
    // Trusted: the private CA is configured.
    let env = Env::start_with(|c, _, _| {
        c.apis[0].upstream = parse_upstream(&url).unwrap();
        c.upstream_ca_file = Some(ca_file.clone());
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let t = env.token(&["orders:read"]);
    let r = env.get("/orders/v1/9", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        (body["tls"].clone(), body["path"].clone()),
        (serde_json::json!(true), serde_json::json!("/secure/9"))
    );
    assert_eq!(body["subject"], "demo-client");
    drop(env);
    // Not trusted: the system store does not know the private CA, so the upstream leg fails.
    let env = Env::start_with(|c, _, _| c.apis[0].upstream = parse_upstream(&url).unwrap()).await;
    env.wait_ready(Duration::from_secs(10)).await;
    let r = env
        .get("/orders/v1/9", Some(&env.token(&["orders:read"])))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (502, "101503".to_string()),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_announce_connection_close() {
    let closed = free_port().unwrap();
    let env = Env::start_with(|c, _, _| {
        c.apis[0].upstream = parse_upstream(&format!("http://127.0.0.1:{closed}")).unwrap()
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let t = env.token(&["orders:read"]);
    let (status, raw) = crate::jwt::raw_get_keepalive(&env, "/orders/v1/1", &t).await;
    assert_eq!(status, 502, "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("connection: close"),
        "{raw}"
    );
    for _ in 0..20 {
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 502);
    }
}
