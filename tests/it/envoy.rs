//! Envoy's jwt_authn test vectors (../shared/testdata, written by the Envoy project), served by a
//! JWKS endpoint of their own: keygate must agree with Envoy wherever our rules are the same, and
//! differ only where DESIGN.md says so (exp required by default).

use crate::common::{shared, Env};
use keygate::catalog::KeyManagerSelector;
use keygate::config::{Certificates, KeyManagerConfig};
use keygate::loopback;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn vectors() -> Value {
    serde_json::from_slice(
        &std::fs::read(shared("envoy-jwt-authn/vectors.json")).expect("shared testdata"),
    )
    .unwrap()
}

async fn serve_jwks(doc: Value) -> loopback::Served {
    let handler: loopback::Handler = Arc::new(move |_req| {
        let doc = doc.clone();
        Box::pin(async move { loopback::json(200, &doc) })
    });
    loopback::serve("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_vectors_hold() {
    let v = vectors();
    let rsa = serve_jwks(v["jwks"]["envoy_PublicKey"].clone()).await;
    let ec = serve_jwks(v["jwks"]["envoy_PublicKeyJwkEC"].clone()).await;
    let providers = v["providers"].clone();
    let gsa_issuer = providers["gsa_ec_signature_only"]["issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let strings = |p: &Value| -> Vec<String> {
        p.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let env = Env::start_with(|c, _, _| {
        let jwks = |s: &loopback::Served| {
            Certificates::Jwks(format!("http://{}/jwks", s.addr).parse().unwrap())
        };
        let mut example =
            KeyManagerConfig::self_validating("EnvoyExample", "https://example.com", jwks(&rsa));
        example.audiences = strings(&providers["example_provider"]["audiences"]);
        let mut other =
            KeyManagerConfig::self_validating("EnvoyOther", "https://other.com", jwks(&rsa));
        other.audiences = strings(&providers["other_provider"]["audiences"]);
        let mut gsa = KeyManagerConfig::self_validating("Gsa", &gsa_issuer, jwks(&ec));
        gsa.audiences = strings(&providers["gsa_ec_signature_only"]["audiences"]);
        c.key_managers.extend([example, other, gsa]);
        let mut api = c.apis[0].clone();
        api.name = "Envoy".into();
        api.context = "/envoy".into();
        api.default_version = false;
        api.key_managers = KeyManagerSelector::Named(vec!["EnvoyExample".into(), "Gsa".into()]);
        api.resources = vec![keygate::catalog::ResourceDef {
            verb: http::Method::GET,
            target: "/*".into(),
            scopes: vec![],
            auth: keygate::catalog::AuthType::Any,
        }];
        let mut other_api = api.clone();
        other_api.name = "EnvoyOther".into();
        other_api.context = "/other".into();
        other_api.key_managers = KeyManagerSelector::Named(vec!["EnvoyOther".into()]);
        c.apis.extend([api, other_api]);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;

    // keygate's expected status per vector name, on the API that trusts example + gsa.
    let expected = |name: &str| -> u16 {
        match name {
            "GoodToken" | "GoodTokenWithSpaces" | "NestedGoodToken" => 200,
            // Envoy: JwtExpired / NotYetValid / AudienceNotAllowed / VerificationFail / UnknownIssuer.
            "ExpiredToken" | "NotYetValidToken" | "NonExpiringToken" | "InvalidAudToken"
            | "NonExistKidToken" => 401,
            "OtherGoodToken" | "ES256WithoutIssToken" => 401,
            // Signature-valid ES256 without exp: Envoy accepts, keygate requires exp (by design).
            "JwtTextEC" | "JwtTextECNoKid" | "JwtTextWithNonExistKidEC" => 401,
            // Envoy's signature-only RSA vectors expired in 2017.
            "JwtTextNoKid" | "JwtTextWithCorrectKid" | "JwtTextWithNonExistKid" => 401,
            other => panic!("unexpected vector {other}"),
        }
    };
    let mut seen = 0;
    for t in v["tokens"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let token = t["token"].as_str().unwrap();
        let r = env.get("/envoy/v1/anything", Some(token)).await;
        assert_eq!(r.status, expected(name), "{name}: {}", r.text());
        if r.status == 401 {
            assert_eq!(r.code(), "900901", "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 15, "only {seen} vectors");

    // OtherGoodToken is fine for the API that trusts other.com (Envoy: Ok for other_provider).
    let other = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "OtherGoodToken")
        .unwrap();
    let r = env
        .get("/other/v1/x", Some(other["token"].as_str().unwrap()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-auth-subject"], "test@other.com");
    // GoodTokenWithSpaces carries `scope: "read write"`.
    let spaced = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "GoodTokenWithSpaces")
        .unwrap();
    let r = env
        .get("/envoy/v1/x", Some(spaced["token"].as_str().unwrap()))
        .await;
    assert_eq!(r.json()["headers"]["x-auth-scopes"], "read write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_es256_vectors_pass_when_exp_is_not_required() {
    let v = vectors();
    let ec = serve_jwks(v["jwks"]["envoy_PublicKeyJwkEC"].clone()).await;
    let issuer = v["providers"]["gsa_ec_signature_only"]["issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let env = Env::start_with(|c, _, _| {
        let mut gsa = KeyManagerConfig::self_validating(
            "Gsa",
            &issuer,
            Certificates::Jwks(format!("http://{}/jwks", ec.addr).parse().unwrap()),
        );
        gsa.require_exp = false;
        c.key_managers.push(gsa);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let token = |name: &str| {
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (name, status) in [
        ("JwtTextEC", 200),
        ("JwtTextECNoKid", 200),
        ("JwtTextWithNonExistKidEC", 401),
    ] {
        let r = env.get("/orders/v1/1", Some(&token(name))).await;
        // No scope claim in Envoy's tokens: the Orders resource needs orders:read, so a verified
        // token gets 403 (authenticated, not authorized) and a refused one 401.
        let expect = if status == 200 { 403 } else { 401 };
        assert_eq!(r.status, expect, "{name}: {}", r.text());
    }
}
