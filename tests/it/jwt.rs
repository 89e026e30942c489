//! JWT self-validation end to end: every acceptance and rejection path, with the provider's call
//! counts.

use crate::common::{now, Env};
use keygate::catalog::KeyManagerSelector;
use keygate::config::{Certificates, KeyManagerConfig};
use keygate::devidp::keys::{forge, SigningAlg, SigningKey};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_passes_and_carries_identity_headers() {
    let env = Env::ready().await;
    for kid in ["rs256-1", "ps256-1", "es256-1", "eddsa-1"] {
        let key = env.idp.key(kid).unwrap();
        let claims = env
            .idp
            .claims("app-1", &["orders:read", "other"], Duration::from_secs(600));
        let r = env
            .get("/orders/v1/42?x=1", Some(&key.mint(json!({}), &claims)))
            .await;
        assert_eq!(r.status, 200, "{kid}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["path"], "/backend/42");
        assert_eq!(echo["query"], "x=1");
        let h = &echo["headers"];
        assert_eq!(h["x-auth-subject"], "app-1");
        assert_eq!(h["x-auth-client-id"], "app-1");
        assert_eq!(h["x-auth-scopes"], "orders:read other");
        assert_eq!(h["x-auth-key-manager"], "AsgardeoDemo");
        assert!(
            h.get("authorization").is_none(),
            "token must not reach the upstream"
        );
    }
    assert_eq!(
        env.idp.jwks_calls(),
        1,
        "one fetch at start, none per token"
    );
    assert_eq!(env.echo.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nine_supported_algorithms_verify() {
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let extra: Vec<_> = [
        SigningAlg::RS384,
        SigningAlg::RS512,
        SigningAlg::PS384,
        SigningAlg::PS512,
        SigningAlg::ES384,
    ]
    .into_iter()
    .map(|alg| {
        idp.publish(SigningKey::generate(
            alg,
            &format!("{}-1", alg.name().to_lowercase()),
        ))
    })
    .collect();
    let env = Env::start_with_idp(idp, |_, _, _| {}).await;
    env.wait_ready(Duration::from_secs(10)).await;
    let kids = ["rs256-1", "ps256-1", "es256-1", "eddsa-1"];
    let keys: Vec<_> = kids
        .iter()
        .map(|k| env.idp.key(k).unwrap())
        .chain(extra)
        .collect();
    assert_eq!(keys.len(), 9);
    for key in keys {
        let t = key.mint(
            json!({}),
            &env.idp
                .claims("app", &["orders:read"], Duration::from_secs(600)),
        );
        let r = env.get("/orders/v1/1", Some(&t)).await;
        assert_eq!(r.status, 200, "{}: {}", key.alg.name(), r.text());
        // The same key material under another algorithm of its family is refused.
        if key.alg == SigningAlg::RS384 {
            let t = key.mint_as(
                SigningAlg::RS512,
                json!({}),
                &env.idp
                    .claims("app", &["orders:read"], Duration::from_secs(600)),
            );
            assert_invalid(&env, &t, "RS512 on an RS384 key").await;
        }
    }
    assert_eq!(env.idp.jwks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_are_cached_but_scopes_are_checked_every_time() {
    let env = Env::ready().await;
    let t = env.token(&["orders:read"]);
    for _ in 0..5 {
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    }
    // Same token, resource needing orders:write: refused although the verdict is cached.
    let r = env
        .send(env.http.post(env.url("/orders/v1")).bearer_auth(&t))
        .await;
    assert_eq!((r.status, r.code()), (403, "900910".to_string()));
    let verified = env
        .metric(
            r#"keygate_token_validation_seconds_count{key_manager="AsgardeoDemo",path="verified"}"#,
        )
        .await;
    let cached = env
        .metric(
            r#"keygate_token_validation_seconds_count{key_manager="AsgardeoDemo",path="cached"}"#,
        )
        .await;
    assert_eq!((verified, cached), (1.0, 5.0));
    assert_eq!(
        env.metric_reaches(
            r#"keygate_requests_total{api="Orders",outcome="ok",resource="/{id}",status="200"}"#,
            5.0
        )
        .await,
        5.0
    );
    assert_eq!(
        env.metric_reaches(
            r#"keygate_requests_total{api="Orders",outcome="900910",resource="/",status="403"}"#,
            1.0
        )
        .await,
        1.0
    );
    assert_eq!(env.idp.jwks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_900902_with_a_bare_challenge() {
    let env = Env::ready().await;
    let cases: Vec<Option<&str>> = vec![
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer \"\""),
        Some("Token abc"),
    ];
    for header in cases {
        let mut req = env.http.get(env.url("/orders/v1/42"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = env.send(req).await;
        assert_eq!(r.status, 401, "{header:?}");
        let body = r.json();
        assert_eq!(body["code"], "900902");
        assert_eq!(body["message"], "Missing Credentials");
        assert!(body["description"]
            .as_str()
            .unwrap()
            .contains("'Authorization : Bearer ACCESS_TOKEN'"));
        assert_eq!(
            r.header("www-authenticate").unwrap(),
            r#"Bearer realm="keygate""#
        );
        assert_eq!(r.header("content-type").unwrap(), "application/json");
    }
    // `bearer` in lower case is accepted (RFC 7235), unlike WSO2.
    let t = env.token(&["orders:read"]);
    let r = env
        .send(
            env.http
                .get(env.url("/orders/v1/42"))
                .header("authorization", format!("bearer {t}")),
        )
        .await;
    assert_eq!(r.status, 200);
    // Several credentials, comma separated, as WSO2 parses them.
    let r = env
        .send(
            env.http
                .get(env.url("/orders/v1/42"))
                .header("authorization", format!("Basic abc, Bearer \"{t}\"")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(env.echo.calls(), 2);
}

/// Expect 401 900901 with `error="invalid_token"`.
/// The token is accepted on the scoped read.
async fn assert_valid(env: &Env, token: &str) {
    let r = env.get("/orders/v1/42", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn assert_invalid(env: &Env, token: &str, what: &str) -> String {
    let r = env.get("/orders/v1/42", Some(token)).await;
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.code(), "900901", "{what}");
    assert_eq!(r.json()["message"], "Invalid Credentials", "{what}");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge
            .starts_with(r#"Bearer realm="keygate", error="invalid_token", error_description=""#),
        "{what}: {challenge}"
    );
    challenge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_are_900901_and_never_reach_the_upstream() {
    let env = Env::ready().await;
    let idp = &env.idp;
    let key = idp.current_key();
    let base = || idp.claims("demo-client", &["orders:read"], Duration::from_secs(600));
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = base();
        f(&mut c);
        key.mint(json!({}), &c)
    };

    let expired = with(&|c| c["exp"] = json!(now() - 120));
    assert!(assert_invalid(&env, &expired, "expired")
        .await
        .contains("The access token expired"));
    let future_nbf = with(&|c| c["nbf"] = json!(now() + 600));
    assert!(assert_invalid(&env, &future_nbf, "nbf")
        .await
        .contains("not valid yet"));
    let no_exp = with(&|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_invalid(&env, &no_exp, "no exp").await;
    let wrong_iss = with(&|c| c["iss"] = json!("https://evil.example/oauth2/token"));
    assert_invalid(&env, &wrong_iss, "unknown issuer").await;
    let no_iss = with(&|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    assert_invalid(&env, &no_iss, "no issuer").await;

    // Signed by a key the provider never published, under a published kid.
    let foreign = SigningKey::generate(SigningAlg::RS256, "rs256-1");
    assert_invalid(&env, &foreign.mint(json!({}), &base()), "foreign key").await;
    // Payload changed after signing.
    let good = env.token(&["orders:read"]);
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_payload =
        base64_json(&json!({"iss": idp.issuer(), "scope": "orders:admin", "exp": now() + 600}));
    assert_invalid(
        &env,
        &format!("{}.{}.{}", parts[0], tampered_payload, parts[2]),
        "tampered",
    )
    .await;

    // alg none, and HS256 keyed with the provider's public key (the confusion attack).
    let none = forge(&json!({"alg": "none", "typ": "JWT"}), &base(), None);
    assert_invalid(&env, &none, "alg none").await;
    let none_kid = forge(&json!({"alg": "none", "kid": "rs256-1"}), &base(), None);
    assert_invalid(&env, &none_kid, "alg none with kid").await;
    let pem = key.public_pem().unwrap();
    let hs = forge(
        &json!({"alg": "HS256", "kid": "rs256-1"}),
        &base(),
        Some(pem.as_bytes()),
    );
    assert_invalid(&env, &hs, "HS256 with the public key").await;
    let hs_nokid = forge(&json!({"alg": "HS256"}), &base(), Some(pem.as_bytes()));
    assert_invalid(&env, &hs_nokid, "HS256 without kid").await;
    // The RS256-pinned key, used correctly but as PS256: refused, the key decides the algorithm.
    let ps_on_rs = key.mint_as(SigningAlg::PS256, json!({}), &base());
    assert_invalid(&env, &ps_on_rs, "PS256 on an RS256 key").await;
    // An EC key's kid with an RSA algorithm.
    let es = idp.key("es256-1").unwrap();
    assert_invalid(
        &env,
        &key.mint(json!({"kid": es.kid}), &base()),
        "RS256 under an ES256 kid",
    )
    .await;

    // Shapes.
    let r = env.get("/orders/v1/42", Some("a.b")).await;
    assert_eq!((r.status, r.code()), (401, "900901".to_string()));
    assert!(r.json()["description"]
        .as_str()
        .unwrap()
        .starts_with("Invalid JWT token"));
    assert_invalid(&env, "an-opaque-token", "opaque without introspection").await;
    assert_invalid(&env, "!!!.@@@.###", "garbage segments").await;
    let big = format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
    assert!(assert_invalid(&env, &big, "too large")
        .await
        .contains("too large"));

    assert_eq!(env.echo.calls(), 0, "nothing reached the upstream");
    assert_eq!(idp.jwks_calls(), 1, "no rejection caused a JWKS fetch");
    assert_eq!(
        env.metric(
            r#"keygate_token_rejections_total{key_manager="AsgardeoDemo",reason="expired"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        env.metric(
            r#"keygate_token_rejections_total{key_manager="AsgardeoDemo",reason="alg_not_allowed"}"#
        )
        .await,
        2.0
    );
    assert_eq!(
        env.metric(
            r#"keygate_token_rejections_total{key_manager="none",reason="alg_not_allowed"}"#
        )
        .await,
        4.0
    );
}

fn base64_json(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_honoured() {
    let env = Env::ready().await;
    let mut c = env
        .idp
        .claims("demo-client", &["orders:read"], Duration::from_secs(600));
    c["exp"] = json!(now() - 5);
    let r = env
        .get("/orders/v1/42", Some(&env.idp.mint_claims(&c)))
        .await;
    assert_eq!(
        r.status, 200,
        "5 s past exp is inside the default 30 s skew"
    );
    c["nbf"] = json!(now() + 10);
    c["exp"] = json!(now() + 600);
    assert_valid(&env, &env.idp.mint_claims(&c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiences_are_any_of_when_configured() {
    let env = Env::start_with(|c, _, _| {
        c.key_managers[0].audiences = vec!["orders-api".into(), "billing".into()]
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let mut c = env
        .idp
        .claims("demo-client", &["orders:read"], Duration::from_secs(600));
    assert_invalid(&env, &env.idp.mint_claims(&c), "aud = client id").await;
    c["aud"] = json!(["x", "billing"]);
    assert_valid(&env, &env.idp.mint_claims(&c)).await;
    c["aud"] = json!("orders-api");
    assert_valid(&env, &env.idp.mint_claims(&c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_managers_must_be_allowed_by_the_api_and_pem_keys_work() {
    let other_key = SigningKey::generate(SigningAlg::RS256, "unused");
    let pem = other_key.public_pem().unwrap();
    let env = Env::start_with(|c, _, _| {
        let mut km = KeyManagerConfig::self_validating(
            "Partner",
            "https://partner.example",
            Certificates::Pem(pem.clone()),
        );
        km.consumer_key_claim = Some("cid".into());
        km.scopes_claim = "scp".into();
        c.key_managers.push(km);
        // Orders trusts only Partner; Open (a copy) trusts every key manager.
        let mut open = c.apis[0].clone();
        open.name = "Open".into();
        open.context = "/open".into();
        open.default_version = false;
        c.apis.push(open);
        c.apis[0].key_managers = KeyManagerSelector::Named(vec!["Partner".into()]);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let demo = env.token(&["orders:read"]);
    // Valid for Open: verified and cached.
    assert_eq!(env.get("/open/v1/1", Some(&demo)).await.status, 200);
    // The same token, now from the cache, on the API that only trusts Partner.
    let cached =
        r#"keygate_token_validation_seconds_count{key_manager="AsgardeoDemo",path="cached"}"#;
    assert_eq!(env.metric(cached).await, 0.0);
    assert_invalid(&env, &demo, "key manager not allowed (cached verdict)").await;
    assert_eq!(env.metric(r#"keygate_token_rejections_total{key_manager="AsgardeoDemo",reason="key_manager_not_allowed"}"#).await, 1.0);
    assert_eq!(env.get("/open/v1/1", Some(&demo)).await.status, 200);
    assert_eq!(
        env.metric(cached).await,
        1.0,
        "the second Open request was a cache hit"
    );

    let claims = json!({"iss": "https://partner.example", "sub": "alice", "cid": "partner-app",
        "scp": ["orders:read", "x y"], "exp": now() + 600});
    // PEM keys have no kid: tokens without one, and tokens with one (as WSO2 and Envoy), verify.
    for header in [json!({"kid": null}), json!({"kid": "partner-2024"})] {
        let t = other_key.mint(header.clone(), &claims);
        let r = env.get("/orders/v1/7", Some(&t)).await;
        assert_eq!(r.status, 200, "{header}: {}", r.text());
        let h = &r.json()["headers"];
        assert_eq!(h["x-auth-client-id"], "partner-app");
        assert_eq!(h["x-auth-scopes"], "orders:read x y");
        assert_eq!(h["x-auth-key-manager"], "Partner");
    }
    // Array scopes are whole: "x y" is one scope, not x and y.
    let mut c = claims.clone();
    c["scp"] = json!(["orders:write orders:read"]);
    let r = env
        .get(
            "/orders/v1/7",
            Some(&other_key.mint(json!({"kid": null}), &c)),
        )
        .await;
    assert_eq!(r.status, 403);
    // A Partner token is refused by a key it was not signed with.
    let impostor = SigningKey::generate(SigningAlg::RS256, "partner-2024");
    assert_invalid(&env, &impostor.mint(json!({}), &claims), "wrong PEM key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_faults_and_open_resources() {
    let env = Env::ready().await;
    let t = env.token(&["orders:read"]);
    let r = env.get("/nothing/here", Some(&t)).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"code": "404", "message": "Not Found", "description": "No matching resource found for given API Request"})
    );
    let r = env
        .send(env.http.delete(env.url("/orders/v1/42")).bearer_auth(&t))
        .await;
    assert_eq!((r.status, r.code()), (403, "900906".to_string()));
    assert!(r.json()["description"]
        .as_str()
        .unwrap()
        .contains("Access failure for API: /orders, version: v1 status: (900906)"));
    assert!(r.header("www-authenticate").is_none());
    // Routing comes before authentication: no token, unknown resource is still 900906.
    assert_eq!(
        env.send(env.http.delete(env.url("/orders/v1/42")))
            .await
            .code(),
        "900906"
    );
    // Scope failure.
    let other = env.token(&["profile"]);
    let r = env.get("/orders/v1/42", Some(&other)).await;
    assert_eq!((r.status, r.code()), (403, "900910".to_string()));
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        r#"Bearer realm="keygate", error="insufficient_scope", scope="orders:read orders:admin""#
    );
    // Any one of the resource's scopes suffices.
    assert_eq!(
        env.get("/orders/v1/42", Some(&env.token(&["orders:admin"])))
            .await
            .status,
        200
    );
    // auth_type None: no token needed, and a garbage token is not even looked at.
    assert_eq!(env.get("/orders/health", None).await.status, 200);
    assert_eq!(
        env.get("/orders/v1/health", Some("garbage")).await.status,
        200
    );
    // Path tricks are refused or normalised before matching.
    // (raw requests: an HTTP client library would resolve dot segments itself)
    for bad in [
        "/orders/v1/../admin",
        "/orders/v1/%2e%2e/x",
        "/orders/v1/a%2fb",
    ] {
        let (status, body) = raw_get(&env, bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(r#""code":"400""#), "{bad}: {body}");
    }
    for (path, upstream) in [
        ("/orders/v1/%34%32", "/backend/42"),
        ("//orders//v1//42/", "/backend/42/"),
    ] {
        let (status, body) = raw_get(&env, path, Some(&t)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            body.contains(&format!(r#""path":"{upstream}""#)),
            "{path}: {body}"
        );
    }
}

/// A request written byte for byte, so the path reaches the proxy exactly as given.
pub async fn raw_get(env: &Env, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(env.proxy.proxy_addr)
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A keep-alive request written byte for byte; returns the status and the response head.
pub async fn raw_get_keepalive(env: &Env, path: &str, token: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(env.proxy.proxy_addr)
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head is complete.
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}
