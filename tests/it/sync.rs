//! `keygate sync` against the embedded provider's API Resource Management and SCIM2 Roles APIs.

use crate::common::{keygate, write};
use keygate::config::Config;
use keygate::control::{sync, Change, SyncOptions};
use keygate::devidp::DevIdp;
use std::path::Path;

fn main_config(idp: &DevIdp, connector: &str) -> String {
    format!(
        "key_managers:\n  - name: Asgardeo\n    type: asgardeo\n    organization: {}\n    base_url: {}\n    client_id: mgmt-client\n    client_secret: ${{KG_TEST_MGMT_SECRET:-mgmt-secret}}\n    connector: {connector}\napis: [apis]\n",
        idp.org(),
        idp.base_url()
    )
}

const ORDERS: &str = r#"name: Orders
context: /orders
version: v1
upstream: http://127.0.0.1:9
scopes:
  - {name: "orders:read", display_name: Read orders, description: Read any order, roles: [manager, Internal/subscriber]}
  - {name: "orders:write", display_name: Write orders, description: Create orders, roles: [manager]}
resources:
  - {verb: GET, target: "/{id}", scopes: ["orders:read"]}
"#;

fn load(dir: &Path) -> Config {
    Config::load(&dir.join("keygate.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

async fn run(dir: &Path, dry_run: bool, prune: bool) -> Vec<Change> {
    let reports = sync(&load(dir), SyncOptions { dry_run, prune })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    reports.into_iter().flat_map(|r| r.changes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_creates_then_nothing_then_only_the_difference() {
    let idp = DevIdp::start().await.unwrap();
    let m = idp.management();
    m.add_resource("APIM_GLOBAL_SCOPES", &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "keygate.yaml",
        &main_config(&idp, "{create_roles: true}"),
    );
    write(d, "apis/orders.yaml", ORDERS);

    // First sync: the scopes in one PATCH, two roles named as the connector names them.
    let changes = run(d, false, false).await;
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::AddScope(_)))
            .count(),
        2,
        "{changes:?}"
    );
    let scopes = m.scopes_of("APIM_GLOBAL_SCOPES");
    assert_eq!(scopes.len(), 2);
    assert_eq!(
        (
            scopes[0].name.as_str(),
            scopes[0].display_name.as_str(),
            scopes[0].description.as_str()
        ),
        ("orders:read", "Read orders", "Read any order")
    );
    assert_eq!(
        m.role("apim_primary_manager").unwrap(),
        vec!["orders:read", "orders:write"]
    );
    assert_eq!(m.role("subscriber").unwrap(), vec!["orders:read"]);
    let first_writes = m.writes();
    assert_eq!(
        first_writes
            .iter()
            .map(|w| w.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        vec!["PATCH", "POST", "POST"],
        "{first_writes:?}"
    );

    // The calls of a first sync (besides the token request).
    let paths = |calls: &[String]| -> Vec<String> {
        calls
            .iter()
            .map(|c| c.replace("/t/-", "").split('?').next().unwrap().to_string())
            .collect()
    };
    let first = paths(&m.calls());
    assert_eq!(
        first,
        vec![
            "GET /api/server/v1/api-resources",
            "GET /api/server/v1/api-resources/res-0/scopes",
            "POST /scim2/v2/Roles/.search",
            "PATCH /api/server/v1/api-resources/res-0",
            "POST /scim2/v2/Roles",
            "POST /scim2/v2/Roles",
        ]
    );
    // Nothing changed: no write call; reads only (each role is read whole).
    let before = m.calls().len();
    let changes = run(d, false, false).await;
    assert_eq!(
        paths(&m.calls()[before..]),
        vec![
            "GET /api/server/v1/api-resources",
            "GET /api/server/v1/api-resources/res-0/scopes",
            "POST /scim2/v2/Roles/.search",
            "GET /scim2/v2/Roles/role-1",
            "GET /scim2/v2/Roles/role-2",
        ]
    );
    assert!(changes.iter().all(|c| !c.writes()), "{changes:?}");
    assert_eq!(m.writes(), first_writes);

    // One description changed: one update.
    write(
        d,
        "apis/orders.yaml",
        &ORDERS.replace("Read any order", "Read every order"),
    );
    run(d, false, false).await;
    let new: Vec<String> = m.writes().into_iter().skip(first_writes.len()).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].starts_with("PATCH ") && new[0].ends_with("/scopes/orders%3Aread"),
        "{new:?}"
    );
    assert_eq!(
        m.scopes_of("APIM_GLOBAL_SCOPES")[0].description,
        "Read every order"
    );

    // Bindings move: roles end exactly as bound.
    write(
        d,
        "apis/orders.yaml",
        &ORDERS.replace("roles: [manager]}", "roles: [Internal/admin]}"),
    );
    run(d, false, false).await;
    assert_eq!(m.role("apim_primary_manager").unwrap(), vec!["orders:read"]);
    assert_eq!(m.role("admin").unwrap(), vec!["orders:write"]);
    assert_eq!(m.role("subscriber").unwrap(), vec!["orders:read"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_unprotected_orphans_and_dry_run_writes_nothing() {
    let idp = DevIdp::start().await.unwrap();
    let m = idp.management();
    m.add_resource(
        "APIM_GLOBAL_SCOPES",
        &[("legacy:x", "old"), ("admin:keep", "hand-made")],
    );
    // A role carrying a scope of another API resource keeps it.
    m.add_role("manager", &["other:scope", "legacy:x", "admin:keep"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "keygate.yaml",
        &main_config(&idp, "{protected_scopes: [\"^admin:\"]}"),
    );
    write(d, "apis/orders.yaml", ORDERS);

    // Dry run: a plan, no write; the binary exits 2.
    let changes = run(d, true, false).await;
    assert!(
        changes.iter().any(
            |c| matches!(c, Change::Orphan { name, deleted: false, .. } if name == "legacy:x")
        ),
        "{changes:?}"
    );
    assert!(m.writes().is_empty(), "{:?}", m.writes());
    let out = keygate()
        .args(["sync", "--dry-run", "--config"])
        .arg(d.join("keygate.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("+ scope orders:read") && stdout.contains("--prune deletes it"),
        "{stdout}"
    );
    assert!(!stdout.contains("mgmt-secret"), "the secret was printed");
    assert!(m.writes().is_empty());

    // Without create_roles, roles are named as written; existing ones are bound, missing ones
    // reported. With --prune the unprotected orphan goes.
    let changes = run(d, false, true).await;
    let names: Vec<String> = m
        .scopes_of("APIM_GLOBAL_SCOPES")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["admin:keep", "orders:read", "orders:write"]);
    // Orphaned and protected scopes in a bound role are left alone; only declared scopes move.
    assert_eq!(
        m.role("manager").unwrap(),
        vec![
            "admin:keep",
            "legacy:x",
            "orders:read",
            "orders:write",
            "other:scope"
        ]
    );
    assert!(m.role("Internal/subscriber").is_none());
    assert!(
        changes.iter().any(
            |c| matches!(c, Change::MissingRole { role, .. } if role == "Internal/subscriber")
        ),
        "{changes:?}"
    );
    // Now in sync: the binary exits 0.
    let out = keygate()
        .args(["sync", "--config"])
        .arg(d.join("keygate.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_stop_the_sync_before_any_call() {
    let idp = DevIdp::start().await.unwrap();
    idp.management().add_resource("APIM_GLOBAL_SCOPES", &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "keygate.yaml",
        &main_config(&idp, "{create_roles: true}"),
    );
    write(
        d,
        "apis/orders.yaml",
        &ORDERS.replace(
            "orders:write\", display_name",
            "internal_orders\", display_name",
        ),
    );
    write(d, "apis/billing.yaml", "name: Billing\ncontext: /billing\nversion: v1\nupstream: http://127.0.0.1:9\nscopes:\n  - {name: \"orders:read\", description: Something else, roles: [Application/x]}\nresources: [{verb: GET, target: /}]\n");
    let err = sync(&load(d), SyncOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orders.yaml: scope \"internal_orders\""),
        "{err}"
    );
    assert!(
        err.contains("billing.yaml: scope \"orders:read\": role \"Application/x\""),
        "{err}"
    );
    assert!(
        err.contains("orders.yaml: scope \"orders:read\" is also declared by")
            && err.contains("billing.yaml with a different"),
        "{err}"
    );
    assert!(
        idp.management().calls().is_empty(),
        "no management call was made"
    );
    assert_eq!(
        idp.counters()
            .token
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "not even for a token"
    );
    let out = keygate()
        .args(["sync", "--config"])
        .arg(d.join("keygate.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_and_a_missing_resource_is_created_only_when_allowed() {
    let idp = DevIdp::start().await.unwrap();
    let m = idp.management();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "keygate.yaml", &main_config(&idp, "{}"));
    write(d, "apis/orders.yaml", ORDERS);
    let err = sync(&load(d), SyncOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"APIM_GLOBAL_SCOPES\" not found"), "{err}");
    write(
        d,
        "keygate.yaml",
        &main_config(&idp, "{create_global_resource: true, create_roles: true}"),
    );
    m.fail_next_with_429(2);
    let started = std::time::Instant::now();
    run(d, false, false).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "Retry-After: 1 was honoured twice"
    );
    assert_eq!(m.scopes_of("APIM_GLOBAL_SCOPES").len(), 2);
    let calls = m.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("POST ") && c.ends_with("/api/server/v1/api-resources")),
        "{calls:?}"
    );
}

#[test]
fn data_plane_modules_never_import_the_control_plane() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "control" {
                    stack.push(p);
                }
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if rel == "main.rs" || rel == "lib.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if text.contains("crate::control")
                || text.contains("keygate::control")
                || text.contains("control::")
            {
                offenders.push(rel);
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "data-plane files import the control plane: {offenders:?}"
    );
}
