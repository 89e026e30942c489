//! `keygate demo`: the embedded identity provider, an echo upstream and the proxy on loopback,
//! with ready-to-paste curl lines. No files, no network, no setup.

use crate::catalog::{
    parse_upstream, ApiDef, AuthType, KeyManagerSelector, ResourceDef, ScopeDef, Timeouts,
};
use crate::config::{Certificates, Config, KeyManagerConfig, KeyManagerKind};
use crate::devidp::DevIdp;
use crate::echo::EchoServer;
use crate::server::{free_port, RunningProxy};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// The demo's key manager name.
pub const DEMO_KM: &str = "AsgardeoDemo";

/// The demo configuration for a provider and an upstream: one Asgardeo-shaped key manager and
/// an `Orders` API with a scoped read, a scoped write and an open health resource.
pub fn demo_config(idp: &DevIdp, upstream: &str) -> Config {
    let mut km = KeyManagerConfig::self_validating(
        DEMO_KM,
        &idp.issuer(),
        Certificates::Jwks(idp.jwks_url().parse().expect("valid URL")),
    );
    km.kind = KeyManagerKind::Asgardeo;
    km.consumer_key_claim = Some("azp".into());
    // Opaque tokens (Asgardeo's default) are introspected with the management app's credentials.
    km.introspection_endpoint = Some(idp.introspection_url().parse().expect("valid URL"));
    km.client_id = Some("demo-client".into());
    km.client_secret = Some(crate::config::Secret::new("demo-secret"));
    let scope = |name: &str, desc: &str| ScopeDef {
        name: name.into(),
        display_name: name.into(),
        description: desc.into(),
        roles: vec![],
    };
    let res = |verb: &str, target: &str, scopes: &[&str], auth: AuthType| ResourceDef {
        verb: verb.parse().expect("method"),
        target: target.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        auth,
    };
    let api = ApiDef {
        name: "Orders".into(),
        context: "/orders".into(),
        version: "v1".into(),
        default_version: true,
        upstream: parse_upstream(&format!("{upstream}/backend")).expect("echo URL"),
        timeouts: Timeouts::default(),
        key_managers: KeyManagerSelector::All,
        authorization_header: http::header::AUTHORIZATION,
        forward_authorization: false,
        scopes: vec![
            scope("orders:read", "Read orders"),
            scope("orders:write", "Create orders"),
        ],
        resources: vec![
            res("GET", "/health", &[], AuthType::None),
            res(
                "GET",
                "/{id}",
                &["orders:read", "orders:admin"],
                AuthType::Any,
            ),
            res("POST", "/", &["orders:write"], AuthType::Any),
        ],
        source: "(demo)".into(),
    };
    let mut config = Config::empty();
    config.key_managers = vec![km];
    config.apis = vec![api];
    config
}

fn preferred(port: u16) -> SocketAddr {
    let want: SocketAddr = ([127, 0, 0, 1], port).into();
    if TcpListener::bind(want).is_ok() {
        want
    } else {
        ([127, 0, 0, 1], free_port().unwrap_or(0)).into()
    }
}

/// Run the demo until Ctrl-C.
pub fn run() -> Result<(), String> {
    let support = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (idp, echo) = support
        .block_on(async {
            let idp = DevIdp::start().await?;
            let echo = EchoServer::start().await?;
            Ok::<_, std::io::Error>((idp, echo))
        })
        .map_err(|e| format!("cannot start demo servers: {e}"))?;
    let mut config = demo_config(&idp, &echo.url());
    config.listen = preferred(8080);
    config.admin_listen = preferred(9091);
    let proxy = RunningProxy::start(config)?;
    // Ready means the key manager has fetched its JWKS from the embedded provider.
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !crate::admin::readiness(&proxy.runtime.load()).0 && Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    let read = idp.mint("demo-client", &["orders:read"]);
    let other = idp.mint("demo-client", &["profile"]);
    let url = proxy.url();
    println!("keygate demo is up in {} ms", started.elapsed().as_millis());
    println!("  proxy     {url}   (API Orders v1 at /orders/v1, default version also at /orders)");
    println!(
        "  admin     {}   (/healthz /readyz /metrics)",
        proxy.admin_url()
    );
    println!(
        "  provider  {}   (Asgardeo-shaped: organization {})",
        idp.tenant_url(),
        idp.org()
    );
    println!("  upstream  {}   (echoes what it receives)", echo.url());
    println!();
    println!(
        "# 200: a token with orders:read (the echo shows X-Auth-* headers and no Authorization)"
    );
    println!("curl -i {url}/orders/v1/42 -H 'Authorization: Bearer {read}'");
    let opaque = idp.mint_opaque("opaque-client", &["orders:read"], Duration::from_secs(3600));
    println!();
    println!("# 200: an opaque token (Asgardeo's default), validated by cached introspection");
    println!("curl -i {url}/orders/v1/42 -H 'Authorization: Bearer {opaque}'");
    println!();
    println!("# 401 900902: no token");
    println!("curl -i {url}/orders/v1/42");
    println!();
    println!("# 401 900901: a tampered token");
    println!(
        "curl -i {url}/orders/v1/42 -H 'Authorization: Bearer {}x'",
        &read[..read.len() - 1]
    );
    println!();
    println!("# 403 900910: a valid token without orders:read");
    println!("curl -i {url}/orders/v1/42 -H 'Authorization: Bearer {other}'");
    println!();
    println!("# 200 without a token: GET /health has auth_type None");
    println!("curl -i {url}/orders/health");
    println!();
    println!(
        "# a fresh token from the provider's token endpoint (client_credentials, like Asgardeo)"
    );
    println!(
        "curl -s -u demo-client:demo-secret -d grant_type=client_credentials -d 'scope=orders:read orders:write' {}",
        idp.token_url()
    );
    println!("# ... or an opaque one: the same with -u opaque-client:opaque-secret");
    println!();
    println!("Ctrl-C to stop.");
    support.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    drop(proxy);
    drop((idp, echo));
    Ok(())
}
