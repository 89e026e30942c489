//! Opaque tokens and "Use introspect": RFC 7662 against the embedded provider, counting calls.

use crate::common::{now, Env};
use keygate::catalog::KeyManagerSelector;
use keygate::config::{ClientAuth, KeyManagerConfig, Secret, TokenPattern, ValidationMethod};
use keygate::devidp::DevIdp;
use std::time::{Duration, Instant};

fn hour() -> Duration {
    Duration::from_secs(3600)
}

/// Poll `f` until it is true (for background work we cannot await directly).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_opaque_token_passes_with_its_identity_and_scopes() {
    let env = Env::ready().await;
    let t = env
        .idp
        .mint_opaque("opaque-client", &["orders:read", "extra"], hour());
    let r = env.get("/orders/v1/3", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(h["x-auth-scopes"], "orders:read extra");
    assert_eq!(h["x-auth-client-id"], "opaque-client");
    assert_eq!(h["x-auth-subject"], "opaque-client");
    assert_eq!(h["x-auth-key-manager"], "AsgardeoDemo");
    assert!(h.get("authorization").is_none());
    // Scopes are checked per request against the cached answer.
    let r = env
        .send(env.http.post(env.url("/orders/v1")).bearer_auth(&t))
        .await;
    assert_eq!((r.status, r.code()), (403, "900910".to_string()));
    assert_eq!(env.idp.introspect_calls(), 1);
    assert_eq!(
        env.metric(
            r#"keygate_introspection_calls_total{key_manager="AsgardeoDemo",result="active"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        env.metric(r#"keygate_introspection_cache_total{key_manager="AsgardeoDemo",result="hit"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_is_401_and_remembered_for_the_negative_ttl() {
    let env = Env::ready().await;
    for _ in 0..3 {
        let r = env
            .get("/orders/v1/3", Some("5a1c0c2e-0000-4000-8000-unknowntoken"))
            .await;
        assert_eq!((r.status, r.code()), (401, "900901".to_string()));
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#));
    }
    assert_eq!(
        env.idp.introspect_calls(),
        1,
        "one call, then the negative cache answered"
    );
    assert_eq!(env.echo.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_for_one_new_token_makes_one_call() {
    let env = Env::ready().await;
    env.idp.set_delay(Duration::from_millis(300));
    let t = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    let statuses = env.burst("/orders/v1/1", vec![t; 50]).await;
    assert_eq!(statuses, vec![200; 50]);
    assert_eq!(
        env.idp.introspect_calls(),
        1,
        "50 concurrent requests, one introspection"
    );
    let coalesced = env
        .metric(
            r#"keygate_introspection_cache_total{key_manager="AsgardeoDemo",result="coalesced"}"#,
        )
        .await;
    let hits = env
        .metric(r#"keygate_introspection_cache_total{key_manager="AsgardeoDemo",result="hit"}"#)
        .await;
    assert_eq!(coalesced + hits, 49.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_requests_make_one_call() {
    let env = Env::ready().await;
    let t = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    for _ in 0..1000 {
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    }
    assert_eq!(env.idp.introspect_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_not_revived_by_a_provider_that_says_active() {
    let env = Env::start_with(|c, _, _| c.key_managers[0].clock_skew = Duration::ZERO).await;
    env.wait_ready(Duration::from_secs(10)).await;
    env.idp.set_ignore_expiry(true);
    let t = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], Duration::from_secs(2));
    let exp = now() + 2;
    assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    // Wait for the token's own expiry (this test is about wall-clock time).
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let r = env.get("/orders/v1/1", Some(&t)).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "900901".to_string()),
            "{}",
            r.text()
        );
    }
    assert!(
        env.idp.introspect_calls() <= 2,
        "at most one new call, which could not revive it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_503_while_cached_tokens_keep_passing() {
    let env =
        Env::start_with(|c, _, _| c.key_managers[0].http_timeout = Duration::from_millis(300))
            .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let cached = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    assert_eq!(env.get("/orders/v1/1", Some(&cached)).await.status, 200);
    env.idp.set_introspection_failure(true);
    let fresh = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    for _ in 0..2 {
        let r = env.get("/orders/v1/1", Some(&fresh)).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "900900".to_string()),
            "{}",
            r.text()
        );
        assert_eq!(r.header("retry-after").unwrap(), "5");
    }
    assert_eq!(
        env.idp.introspect_calls(),
        3,
        "outages are not cached: each request asked again"
    );
    assert_eq!(env.get("/orders/v1/1", Some(&cached)).await.status, 200);
    // A timeout is an outage too.
    env.idp.set_introspection_failure(false);
    env.idp.set_delay(Duration::from_millis(1500));
    let slow = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    let r = env.get("/orders/v1/1", Some(&slow)).await;
    assert_eq!((r.status, r.code()), (503, "900900".to_string()));
    assert_eq!(env.get("/orders/v1/1", Some(&cached)).await.status, 200);
    assert!(
        env.metric(
            r#"keygate_introspection_calls_total{key_manager="AsgardeoDemo",result="error"}"#
        )
        .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_entries_are_refreshed_ahead_and_revocation_takes_effect() {
    let env =
        Env::start_with(|c, _, _| c.key_managers[0].cache_max_ttl = Duration::from_secs(2)).await;
    env.wait_ready(Duration::from_secs(10)).await;
    let t = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    let t0 = Instant::now();
    assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    assert_eq!(env.idp.introspect_calls(), 1);
    // Into the last quarter of the 2 s entry: the hit is served from the cache and starts one
    // background refresh.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(t0.elapsed())).await;
    let served = Instant::now();
    assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    assert!(
        served.elapsed() < Duration::from_millis(500),
        "served without waiting on the provider"
    );
    eventually("background refresh", || env.idp.introspect_calls() == 2).await;
    assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    assert_eq!(env.idp.introspect_calls(), 2, "the refreshed entry answers");
    // Revoke; the next refresh-ahead sees active:false and the token stops passing.
    env.idp.revoke(&t);
    let refreshed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        env.get("/orders/v1/1", Some(&t)).await.status,
        200,
        "still the cached answer"
    );
    eventually("refresh after revocation", || {
        env.idp.introspect_calls() == 3
    })
    .await;
    let r = env.get("/orders/v1/1", Some(&t)).await;
    assert_eq!((r.status, r.code()), (401, "900901".to_string()));
    assert!(refreshed_at.elapsed() < Duration::from_secs(4));
    assert_eq!(
        env.metric(
            r#"keygate_introspection_refreshes_total{key_manager="AsgardeoDemo",result="ok"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_of_an_introspect_key_manager_are_introspected_not_self_validated() {
    let env = Env::start_with(|c, _, _| {
        c.key_managers[0].validation = ValidationMethod::Introspect;
        c.key_managers[0].certificates = None;
        c.key_managers[0].introspection_auth = ClientAuth::Basic;
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    // Ready means the readiness probe got an answer from the introspection endpoint.
    assert_eq!(env.idp.introspect_calls(), 1);
    let t = env.token(&["orders:read"]);
    for _ in 0..3 {
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    }
    assert_eq!((env.idp.introspect_calls(), env.idp.jwks_calls()), (2, 0));
    // A JWT the provider never issued (but correctly shaped, from its issuer): inactive.
    let forged = env.idp.current_key().mint(
        serde_json::json!({}),
        &env.idp.claims("x", &["orders:read"], hour()),
    );
    assert_eq!(env.get("/orders/v1/1", Some(&forged)).await.status, 401);
    assert_eq!(env.idp.introspect_calls(), 3);
}

/// A copy of `base` named "Second" that introspects at `url` for tokens of `issuer`.
fn second_km(base: &KeyManagerConfig, issuer: &str, url: &str) -> KeyManagerConfig {
    let mut km = base.clone();
    km.name = "Second".into();
    km.issuer = issuer.to_string();
    km.certificates = None;
    km.validation = ValidationMethod::Introspect;
    km.introspection_endpoint = Some(url.parse().unwrap());
    km.client_id = Some("opaque-client".into());
    km.client_secret = Some(Secret::new("opaque-secret"));
    km
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_follow_the_apis_key_manager_order_and_token_handling() {
    let second = DevIdp::start_with("127.0.0.1:0".parse().unwrap(), "second")
        .await
        .unwrap();
    let second_url = second.introspection_url();
    let second_issuer = second.issuer();
    let env = Env::start_with(|c, _, _| {
        let mut km = second_km(&c.key_managers[0], &second_issuer, &second_url);
        km.introspection_auth = ClientAuth::Post;
        c.key_managers.push(km);
        // Orders asks Second first; a copy of it asks AsgardeoDemo first.
        c.apis[0].key_managers =
            KeyManagerSelector::Named(vec!["Second".into(), "AsgardeoDemo".into()]);
        let mut other = c.apis[0].clone();
        other.name = "OrdersDemoFirst".into();
        other.context = "/orders-demo-first".into();
        other.default_version = false;
        other.key_managers =
            KeyManagerSelector::Named(vec!["AsgardeoDemo".into(), "Second".into()]);
        c.apis.push(other);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let probes = second.introspect_calls();
    assert_eq!(
        probes, 1,
        "the readiness probe of the introspect key manager"
    );
    let from_second = second.mint_opaque("opaque-client", &["orders:read"], hour());
    let r = env.get("/orders/v1/1", Some(&from_second)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-auth-key-manager"], "Second");
    assert_eq!(
        (
            second.introspect_calls() - probes,
            env.idp.introspect_calls()
        ),
        (1, 0)
    );
    // The other API asks AsgardeoDemo first, and only it: its "inactive" is final (as WSO2).
    let r = env.get("/orders-demo-first/v1/1", Some(&from_second)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        (
            second.introspect_calls() - probes,
            env.idp.introspect_calls()
        ),
        (1, 1)
    );
    drop(env);

    // Token handling: Second only takes tokens that look like its own.
    let env = Env::start_with(|c, _, _| {
        let mut km = second_km(&c.key_managers[0], &second_issuer, &second_url);
        km.token_handling = vec![TokenPattern::Reference(
            regex::Regex::new("^second-").unwrap(),
        )];
        c.key_managers.push(km);
        c.apis[0].key_managers =
            KeyManagerSelector::Named(vec!["Second".into(), "AsgardeoDemo".into()]);
    })
    .await;
    env.wait_ready(Duration::from_secs(10)).await;
    let demo_token = env
        .idp
        .mint_opaque("opaque-client", &["orders:read"], hour());
    let before = second.introspect_calls();
    let r = env.get("/orders/v1/1", Some(&demo_token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-auth-key-manager"], "AsgardeoDemo");
    assert_eq!(
        second.introspect_calls(),
        before,
        "Second's pattern did not accept the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_introspect_key_manager_is_ready_only_when_its_endpoint_answers() {
    let idp = DevIdp::start().await.unwrap();
    idp.set_introspection_failure(true);
    let env = Env::start_with_idp(idp, |c, _, _| {
        c.key_managers[0].validation = ValidationMethod::Introspect;
        c.key_managers[0].certificates = None;
    })
    .await;
    eventually("the first probe", || env.idp.introspect_calls() >= 1).await;
    let r = env.admin("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("introspection failing: HTTP 500"),
        "{}",
        r.text()
    );
    env.idp.set_introspection_failure(false);
    env.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(env.read_status("/orders/v1/1").await, 200);
}

/// A discovered introspection endpoint follows the discovery document on every refresh; a
/// configured one is never replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_refresh_moves_a_discovered_introspection_endpoint() {
    use keygate::auth::key_manager::KeyManager;
    let idp = DevIdp::start().await.unwrap();
    let moved = DevIdp::start().await.unwrap();
    let well_known = format!(
        "{}/oauth2/token/.well-known/openid-configuration",
        idp.tenant_url()
    );
    let mut discovered =
        keygate::demo::demo_config(&idp, "http://127.0.0.1:9").key_managers[0].clone();
    discovered.introspection_endpoint = None;
    discovered.well_known_endpoint = Some(well_known.parse().unwrap());
    let mut configured = discovered.clone();
    configured.introspection_endpoint = Some(idp.introspection_url().parse().unwrap());
    let http = reqwest::Client::new();
    let bg = tokio::runtime::Handle::current();
    let metrics = std::sync::Arc::new(keygate::metrics::Metrics::new());
    let endpoint = |km: &KeyManager| {
        km.introspector
            .as_ref()
            .and_then(|i| i.endpoint())
            .map(|u| u.to_string())
    };
    let d = KeyManager::new(discovered, &http, &bg, &metrics).unwrap();
    let c = KeyManager::new(configured, &http, &bg, &metrics).unwrap();
    assert_eq!(endpoint(&d), None);
    d.discover().await.unwrap();
    c.discover().await.unwrap();
    assert_eq!(endpoint(&d), Some(idp.introspection_url()));
    idp.set_advertised_base(&moved.base_url());
    d.discover().await.unwrap();
    c.discover().await.unwrap();
    assert_eq!(endpoint(&d), Some(moved.introspection_url()));
    assert_eq!(endpoint(&c), Some(idp.introspection_url()));
}
