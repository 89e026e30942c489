//! Hot-path costs, each bench naming what it measures. `cargo bench --bench hot_path`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keygate::admission::{admit, Trail};
use keygate::auth::jwt::{self, TokenShape};
use keygate::auth::keys::KeySet;
use keygate::auth::{bearer, Authenticator, KmPolicy};
use keygate::catalog::route::RouteTable;
use keygate::catalog::{
    parse_upstream, ApiDef, AuthType, KeyManagerSelector, ResourceDef, Timeouts,
};
use keygate::config::{Certificates, Config, KeyManagerConfig};
use keygate::demo::demo_config;
use keygate::devidp::keys::{SigningAlg, SigningKey};
use keygate::devidp::DevIdp;
use keygate::metrics::Metrics;
use keygate::runtime::Runtime;
use keygate::{enrich, upstream};
use pingora::http::RequestHeader;
use serde_json::json;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

// The allocator the `keygate` binary runs with, so allocation costs are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The physical limit beside the verify benches: `openssl speed`'s raw verify rate for the same
/// key types on this machine, printed before them (skipped when openssl is not installed).
fn print_openssl_speed() {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "1", "rsa2048", "ecdsap256", "ed25519"])
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        eprintln!("openssl speed: openssl not found; no raw verify figures");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // The last column of each line is verifications per second.
    for line in text.lines() {
        let l = line.trim_start();
        let name = if l.starts_with("rsa 2048 bits") {
            "RSA-2048 verify (RS256/PS256 limit)"
        } else if l.starts_with("256 bits ecdsa") {
            "P-256 verify (ES256 limit)"
        } else if l.starts_with("253 bits EdDSA") {
            "Ed25519 verify (EdDSA limit)"
        } else {
            continue;
        };
        if let Some(Ok(per_s)) = l.split_whitespace().last().map(str::parse::<f64>) {
            eprintln!("openssl speed: {name}: {:.1} us", 1e6 / per_s);
        }
    }
}

fn verify(c: &mut Criterion) {
    print_openssl_speed();
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

/// A current-thread runtime, an RS256 key, and a configuration with one key manager that trusts
/// the key as PEM (no network; the PEM form needs an RSA key).
fn pem_setup() -> (tokio::runtime::Runtime, SigningKey, Config) {
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
    (rt, key, config)
}

fn cache_hit(c: &mut Criterion) {
    let (rt, key, config) = pem_setup();
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

/// The cached path over a pool of 10,000 distinct cached tokens, round robin: what a cache hit
/// costs when the entries are not in the CPU's caches (the load comparison's "pool 10,000").
fn cache_hit_pool(c: &mut Criterion) {
    // Minting 10,000 RS256 tokens takes a few seconds.
    let (rt, key, config) = pem_setup();
    let auth = Authenticator::new(&config, rt.handle().clone(), Arc::new(Metrics::new())).unwrap();
    let allowed = KmPolicy::all(1);
    let tokens: Vec<String> = (0..10_000)
        .map(|i| {
            let mut cl = claims("https://idp");
            cl["jti"] = json!(i);
            let t = key.mint(json!({"kid": null}), &cl);
            rt.block_on(auth.authenticate(&t, &allowed)).unwrap();
            t
        })
        .collect();
    let mut i = 0;
    c.bench_function("verdict_cache_hit/pool_10000_round_robin", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            ready(auth.authenticate(black_box(&tokens[i]), &allowed)).unwrap()
        })
    });
}

/// An opaque token whose introspection answer is cached (the embedded provider answered once).
fn introspection_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let idp = rt.block_on(DevIdp::start()).unwrap();
    let config = demo_config(&idp, "http://127.0.0.1:9");
    let auth = Authenticator::new(&config, rt.handle().clone(), Arc::new(Metrics::new())).unwrap();
    let token = idp.mint_opaque(
        "opaque-client",
        &["orders:read"],
        std::time::Duration::from_secs(3600),
    );
    let allowed = KmPolicy::all(1);
    rt.block_on(auth.authenticate(&token, &allowed)).unwrap();
    assert_eq!(idp.introspect_calls(), 1);
    c.bench_function("introspection_cache_hit/token_to_principal", |b| {
        b.iter(|| ready(auth.authenticate(black_box(&token), &allowed)).unwrap())
    });
    assert_eq!(idp.introspect_calls(), 1, "every iteration was a cache hit");
}

/// The whole request side without the network: path normalisation, route among 1,000
/// resources, bearer extraction, cached verdict, scope check, Permit.
fn pipeline(c: &mut Criterion) {
    let (rt, key, mut config) = pem_setup();
    config.apis = thousand_resources();
    let runtime = Runtime::new(config, rt.handle().clone(), Arc::new(Metrics::new())).unwrap();
    let mut cl = claims("https://idp");
    cl["scope"] = json!("read write");
    let token = key.mint(json!({"kid": null}), &cl);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers.insert(http::header::HOST, "gw.example".parse().unwrap());
    let get = http::Method::GET;
    let path = "/svc57/v1/items2/42/parts/7";
    let mut trail = Trail::default();
    rt.block_on(admit(&runtime, &get, path, &headers, &mut trail))
        .unwrap();
    c.bench_function("pipeline/request_to_permit_cached", |b| {
        b.iter(|| {
            let mut trail = Trail::default();
            ready(admit(&runtime, &get, black_box(path), &headers, &mut trail)).unwrap()
        })
    });
    let permit = ready(admit(&runtime, &get, path, &headers, &mut trail)).unwrap();
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    req.insert_header("Host", "gw.example").unwrap();
    req.insert_header("User-Agent", "bench").unwrap();
    req.insert_header("Accept", "*/*").unwrap();
    req.insert_header("Authorization", format!("Bearer {token}"))
        .unwrap();
    let api = &runtime.apis[permit.route().api].def;
    let names = &runtime.header_names;
    c.bench_function("pipeline/upstream_rewrite", |b| {
        b.iter_batched(
            || req.clone(),
            |mut r| {
                upstream::rewrite(&mut r, &permit, api, None).unwrap();
                r
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("pipeline/enrich_identity_headers", |b| {
        b.iter_batched(
            || req.clone(),
            |mut r| {
                enrich::apply(&mut r, &permit, api, names).unwrap();
                r
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    route,
    extract,
    verify,
    cache_hit,
    cache_hit_pool,
    introspection_hit,
    pipeline
);
criterion_main!(benches);
