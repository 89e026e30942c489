//! Hot-path costs, each bench naming what it measures. `cargo bench --bench hot_path`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keygate::auth::jwt::{self, TokenShape};
use keygate::auth::keys::KeySet;
use keygate::auth::{bearer, Authenticator, KmPolicy};
use keygate::catalog::route::RouteTable;
use keygate::catalog::{
    parse_upstream, ApiDef, AuthType, KeyManagerSelector, ResourceDef, Timeouts,
};
use keygate::config::{Certificates, Config, KeyManagerConfig};
use keygate::devidp::keys::{SigningAlg, SigningKey};
use keygate::metrics::Metrics;
use serde_json::json;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str) -> serde_json::Value {
    json!({"iss": iss, "sub": "app", "azp": "app", "scope": "orders:read orders:write", "exp": now() + 3600, "iat": now()})
}

/// 100 APIs of 10 resources each (literal, param and wildcard templates).
fn thousand_resources() -> Vec<ApiDef> {
    (0..100)
        .map(|a| ApiDef {
            name: format!("api{a}"),
            context: format!("/svc{a}"),
            version: "v1".into(),
            default_version: a % 2 == 0,
            upstream: parse_upstream("http://127.0.0.1:9").unwrap(),
            timeouts: Timeouts::default(),
            key_managers: KeyManagerSelector::All,
            authorization_header: http::header::AUTHORIZATION,
            forward_authorization: false,
            scopes: vec![],
            resources: (0..10)
                .map(|r| ResourceDef {
                    verb: if r % 3 == 0 {
                        http::Method::POST
                    } else {
                        http::Method::GET
                    },
                    target: match r % 4 {
                        0 => format!("/items{r}"),
                        1 => format!("/items{r}/{{id}}"),
                        2 => format!("/items{r}/{{id}}/parts/{{part}}"),
                        _ => format!("/items{r}/*"),
                    },
                    scopes: vec!["read".into()],
                    auth: AuthType::Any,
                })
                .collect(),
            source: "bench".into(),
        })
        .collect()
}

fn route(c: &mut Criterion) {
    let apis = thousand_resources();
    let table = RouteTable::new(&apis);
    let get = http::Method::GET;
    c.bench_function("route/match_among_1000_resources", |b| {
        b.iter(|| {
            table
                .route(black_box(&get), black_box("/svc57/v1/items2/42/parts/7"))
                .unwrap()
        })
    });
    c.bench_function("route/miss_among_1000_resources", |b| {
        b.iter(|| {
            table
                .route(black_box(&get), black_box("/nope/v1/items2/42"))
                .is_err()
        })
    });
}

fn extract(c: &mut Criterion) {
    let key = SigningKey::generate(SigningAlg::RS256, "k");
    let token = key.mint(json!({}), &claims("https://idp"));
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    c.bench_function("bearer/extract", |b| {
        b.iter(|| bearer::extract(black_box(&headers), &http::header::AUTHORIZATION).unwrap())
    });
    c.bench_function("jwt/classify_and_peek", |b| {
        b.iter(|| matches!(jwt::classify(black_box(&token)), Ok(TokenShape::Jwt(_))))
    });
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_cold_warm_keyset");
    for alg in [
        SigningAlg::RS256,
        SigningAlg::PS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
    ] {
        let key = SigningKey::generate(alg, "k");
        let doc = json!({"keys": [key.jwk()]});
        let (set, _) = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
        let token = key.mint(json!({}), &claims("https://idp"));
        let TokenShape::Jwt(peek) = jwt::classify(&token).unwrap() else {
            unreachable!()
        };
        let validation = jwt::validation(peek.alg, "https://idp", &[], 30, true);
        group.bench_with_input(BenchmarkId::from_parameter(alg.name()), &token, |b, t| {
            b.iter(|| jwt::verify(black_box(t), &peek, &set, &validation).unwrap())
        });
    }
    group.finish();
}

/// Poll a future that must complete without waiting (the cached path never awaits).
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the cached path awaited"),
    }
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::generate(SigningAlg::RS256, "k");
    let mut config = Config::empty();
    config.key_managers = vec![KeyManagerConfig::self_validating(
        "KM",
        "https://idp",
        Certificates::Pem(key.public_pem().unwrap()),
    )];
    let auth = Authenticator::new(&config, rt.handle().clone(), Arc::new(Metrics::new())).unwrap();
    let token = key.mint(json!({"kid": null}), &claims("https://idp"));
    let allowed = KmPolicy::all(1);
    rt.block_on(auth.authenticate(&token, &allowed)).unwrap();
    c.bench_function("verdict_cache_hit/token_to_principal", |b| {
        b.iter(|| ready(auth.authenticate(black_box(&token), &allowed)).unwrap())
    });
    let seq = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("verdict_cache_miss/rs256_token_to_principal", |b| {
        b.iter_batched(
            || {
                let mut cl = claims("https://idp");
                cl["jti"] = json!(seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                key.mint(json!({"kid": null}), &cl)
            },
            |t| rt.block_on(auth.authenticate(&t, &allowed)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, route, extract, verify, cache_hit);
criterion_main!(benches);
