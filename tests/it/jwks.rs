//! The JWKS store against a live provider: rotation, single-flight, kid floods, outages.

use crate::common::Env;
use keygate::devidp::keys::{SigningAlg, SigningKey};
use keygate::devidp::DevIdp;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_costs_exactly_one_extra_fetch() {
    let env = Env::ready().await;
    assert_eq!(env.idp.jwks_calls(), 1);
    let kid = env.idp.rotate();
    assert_eq!(env.idp.current_key().kid, kid);
    let t = env.token(&["orders:read"]);
    assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    assert_eq!(env.idp.jwks_calls(), 2, "the unknown kid caused one fetch");
    // More tokens under the new kid: no more fetches.
    for _ in 0..3 {
        assert_eq!(env.read_status("/orders/v1/1").await, 200);
    }
    assert_eq!(env.idp.jwks_calls(), 2);
    assert_eq!(env.metric(r#"keygate_jwks_fetches_total{key_manager="AsgardeoDemo",reason="unknown_kid",result="ok"}"#).await, 1.0);
    assert_eq!(
        env.metric(r#"keygate_jwks_keys{key_manager="AsgardeoDemo"}"#)
            .await,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_new_kid_share_one_fetch() {
    let env = Env::ready().await;
    env.idp.rotate();
    // Slow the provider down so that every request arrives while the fetch is in flight.
    env.idp.set_delay(Duration::from_millis(300));
    let tokens: Vec<String> = (0..50)
        .map(|i| env.idp.mint(&format!("app-{i}"), &["orders:read"]))
        .collect();
    assert!(env
        .burst("/orders/v1/9", tokens)
        .await
        .iter()
        .all(|&s| s == 200));
    assert_eq!(env.idp.jwks_calls(), 2, "50 waiters, one fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_makes_at_most_a_handful_of_fetches() {
    let env = Env::ready().await;
    let key = env.idp.current_key();
    let claims = env
        .idp
        .claims("demo-client", &["orders:read"], Duration::from_secs(600));
    // 100 sequential, then 100 concurrent.
    for i in 0..100 {
        let t = key.mint(json!({"kid": format!("random-{i}")}), &claims);
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 401);
    }
    let tokens: Vec<String> = (100..200)
        .map(|i| key.mint(json!({"kid": format!("random-{i}")}), &claims))
        .collect();
    assert!(env
        .burst("/orders/v1/1", tokens)
        .await
        .iter()
        .all(|&s| s == 401));
    let calls = env.idp.jwks_calls();
    assert!(calls <= 3, "200 random kids caused {} fetches", calls - 1);
    assert!(
        env.metric(r#"keygate_jwks_refresh_cooldown_hits_total{key_manager="AsgardeoDemo"}"#)
            .await
            >= 190.0
    );
    // Valid tokens under the known kid were never affected.
    assert_eq!(env.read_status("/orders/v1/1").await, 200);
    assert_eq!(env.echo.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_is_remembered() {
    let env =
        Env::start_with(|c, _, _| c.key_managers[0].jwks_min_refresh_interval = Duration::ZERO)
            .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let key = env.idp.current_key();
    let claims = env
        .idp
        .claims("demo-client", &["orders:read"], Duration::from_secs(600));
    let ghost = key.mint(json!({"kid": "ghost"}), &claims);
    for _ in 0..5 {
        assert_eq!(env.get("/orders/v1/1", Some(&ghost)).await.status, 401);
    }
    assert_eq!(
        env.idp.jwks_calls(),
        2,
        "fetched once for ghost, then remembered"
    );
    let ghost2 = key.mint(json!({"kid": "ghost-2"}), &claims);
    assert_eq!(env.get("/orders/v1/1", Some(&ghost2)).await.status, 401);
    assert_eq!(
        env.idp.jwks_calls(),
        3,
        "without a cooldown another kid may fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_at_start_then_up() {
    let idp = DevIdp::start().await.unwrap();
    idp.set_down(true);
    let env = Env::start_with_idp(idp, |_, _, _| {}).await;
    // The proxy is up and says why it is not ready.
    let r = env.admin("/readyz").await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["ready"], false);
    assert_eq!(body["key_managers"][0]["name"], "AsgardeoDemo");
    assert_eq!(env.admin("/healthz").await.status, 200);
    // A token for a key manager without keys: 503 900900, not 401.
    let r = env
        .get("/orders/v1/1", Some(&env.token(&["orders:read"])))
        .await;
    assert_eq!((r.status, r.code()), (503, "900900".to_string()));
    assert_eq!(r.header("retry-after").unwrap(), "5");
    assert!(r.header("www-authenticate").is_none());
    // Open resources keep working.
    assert_eq!(env.get("/orders/health", None).await.status, 200);
    env.idp.set_down(false);
    env.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(env.read_status("/orders/v1/1").await, 200);
    let r = env.admin("/readyz").await.json();
    assert_eq!(r["key_managers"][0]["keys"], 4);
    assert!(env.metric(r#"keygate_jwks_fetches_total{key_manager="AsgardeoDemo",reason="start",result="error"}"#).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_provider_outage() {
    let env = Env::ready().await;
    let before = env.token(&["orders:read"]);
    env.idp.set_down(true);
    // Known kid: validated locally, the outage does not matter.
    assert_eq!(env.read_status("/orders/v1/1").await, 200);
    assert_eq!(env.get("/orders/v1/1", Some(&before)).await.status, 200);
    // Unknown kid while the provider is down: the fetch fails, an outage is 503, not 401.
    let stranger = SigningKey::generate(SigningAlg::RS256, "rotated-during-outage");
    let t = stranger.mint(
        json!({}),
        &env.idp
            .claims("demo-client", &["orders:read"], Duration::from_secs(600)),
    );
    let r = env.get("/orders/v1/1", Some(&t)).await;
    assert_eq!((r.status, r.code()), (503, "900900".to_string()));
    assert_eq!(
        env.admin("/readyz").await.status,
        200,
        "old keys still usable: still ready"
    );
}
