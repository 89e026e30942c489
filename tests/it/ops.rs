//! Operations: metrics, readiness, hot reload under load, graceful shutdown, access logs, and
//! the deploy/ artifacts.

use crate::common::{keygate, now, write, Env};
use keygate::config::Config;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A temporary config folder (kept while the first value lives), its path, a provider and an
/// echo upstream.
async fn fixture() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    keygate::devidp::DevIdp,
    keygate::echo::EchoServer,
) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let idp = keygate::devidp::DevIdp::start().await.unwrap();
    let echo = keygate::echo::EchoServer::start().await.unwrap();
    (dir, d, idp, echo)
}

fn main_config(idp: &keygate::devidp::DevIdp, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nthreads: 1\nshutdown_grace: 2s\nlog_format: json\n{extra}key_managers:\n  - name: Asgardeo\n    type: asgardeo\n    organization: {}\n    base_url: {}\n    client_id: demo-client\n    client_secret: demo-secret\napis: [apis]\n",
        idp.org(),
        idp.base_url()
    )
}

fn orders_api(upstream: &str, extra_resource: &str) -> String {
    format!(
        "name: Orders\ncontext: /orders\nversion: v1\nupstream: {upstream}\nscopes:\n  - {{name: \"orders:read\"}}\nresources:\n  - {{verb: GET, target: \"/{{id}}\", scopes: [\"orders:read\"]}}\n{extra_resource}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_requests_validation_keys_upstream_and_build() {
    let env = Env::ready().await;
    let t = env.token(&["orders:read"]);
    for _ in 0..3 {
        assert_eq!(env.get("/orders/v1/1", Some(&t)).await.status, 200);
    }
    assert_eq!(env.get("/orders/v1/1", None).await.status, 401);
    env.metric_reaches(
        r#"keygate_requests_total{api="Orders",outcome="900902",resource="/{id}",status="401"}"#,
        1.0,
    )
    .await;
    let text = env.admin("/metrics").await.text();
    for sample in [
        r#"keygate_requests_total{api="Orders",outcome="ok",resource="/{id}",status="200"} 3"#,
        r#"keygate_requests_total{api="Orders",outcome="900902",resource="/{id}",status="401"} 1"#,
        r#"keygate_token_validation_seconds_count{key_manager="AsgardeoDemo",path="verified"} 1"#,
        r#"keygate_token_validation_seconds_count{key_manager="AsgardeoDemo",path="cached"} 2"#,
        r#"keygate_jwks_fetches_total{key_manager="AsgardeoDemo",reason="start",result="ok"} 1"#,
        r#"keygate_jwks_keys{key_manager="AsgardeoDemo"} 4"#,
        r#"keygate_key_manager_ready{key_manager="AsgardeoDemo"} 1"#,
        r#"keygate_upstream_duration_seconds_count{api="Orders"} 3"#,
        r#"keygate_verdict_cache_entries 1"#,
        r#"keygate_build_info{version=""#,
    ] {
        assert!(text.contains(sample), "missing {sample}\n{text}");
    }
    let age = env
        .metric(r#"keygate_jwks_age_seconds{key_manager="AsgardeoDemo"}"#)
        .await;
    assert!((0.0..60.0).contains(&age), "{age}");
    let last = env
        .metric(r#"keygate_jwks_last_success_timestamp_seconds{key_manager="AsgardeoDemo"}"#)
        .await;
    assert!((last as u64).abs_diff(now()) < 60);
    // No raw path, token or subject in any label.
    assert!(!text.contains(&t) && !text.contains("demo-client") && !text.contains("/orders/v1/1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_nothing_and_keep_caches_of_unchanged_key_managers() {
    let (_dir, d, idp, echo) = fixture().await;
    write(&d, "keygate.yaml", &main_config(&idp, ""));
    write(&d, "apis/orders.yaml", &orders_api(&echo.url(), ""));
    let env = Env::from_file(idp, &d.join("keygate.yaml")).await;
    let token = env.token(&["orders:read"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (http, url, token) = (env.http.clone(), env.url("/orders/v1/7"), token.clone());
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..15 {
        // Alternate the API definitions: add and remove a resource.
        let extra = if i % 2 == 0 {
            "  - {verb: GET, target: /extra, auth_type: None}\n"
        } else {
            ""
        };
        write(&d, "apis/orders.yaml", &orders_api(&env.echo.url(), extra));
        let reloader = env.proxy.reloader();
        tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 50, "only {ok} requests ran");
    // The last reload (i = 14) added /extra.
    assert_eq!(env.get("/orders/v1/extra", None).await.status, 200);
    assert_eq!(
        env.metric(r#"keygate_config_reloads_total{result="ok"}"#)
            .await,
        15.0
    );
    // The key manager did not change: no new JWKS fetch, and the token was verified once.
    assert_eq!(env.idp.jwks_calls(), 1);
    assert_eq!(
        env.metric(
            r#"keygate_token_validation_seconds_count{key_manager="Asgardeo",path="verified"}"#
        )
        .await,
        1.0
    );

    // A changed key manager starts afresh (its keys are fetched again).
    write(
        &d,
        "keygate.yaml",
        &main_config(&env.idp, "").replace(
            "client_secret: demo-secret\n",
            "client_secret: demo-secret\n    clock_skew: 10s\n",
        ),
    );
    let reloader = env.proxy.reloader();
    tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .unwrap()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while env.idp.jwks_calls() < 2 {
        assert!(
            Instant::now() < until,
            "the changed key manager did not fetch its keys"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(env.get("/orders/v1/7", Some(&token)).await.status, 200);
    assert_eq!(
        env.metric(
            r#"keygate_token_validation_seconds_count{key_manager="Asgardeo",path="verified"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_and_the_old_config_keeps_serving() {
    let (_dir, d, idp, echo) = fixture().await;
    write(&d, "keygate.yaml", &main_config(&idp, ""));
    write(&d, "apis/orders.yaml", &orders_api(&echo.url(), ""));
    let env = Env::from_file(idp, &d.join("keygate.yaml")).await;
    write(&d, "apis/orders.yaml", "name: Orders\ncontext: /orders\nversion: v1\nupstream: ftp://nope\nresources: [{verb: FETCH, target: x}]\n");
    let reloader = env.proxy.reloader();
    let err = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 configuration error(s)"), "{err}");
    assert!(
        err.contains("upstream") && err.contains("FETCH") && err.contains("must start with /"),
        "{err}"
    );
    assert_eq!(env.read_status("/orders/v1/7").await, 200);
    assert_eq!(
        env.metric(r#"keygate_config_reloads_total{result="error"}"#)
            .await,
        1.0
    );
}

/// `keygate run` as a process: SIGHUP reloads, SIGTERM lets the in-flight request finish, and
/// the JSON access log names the request without the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_reloads_on_sighup_and_drains_on_sigterm() {
    let (_dir, d, idp, echo) = fixture().await;
    let (config, port, admin) = process_config(&d, &idp, &echo, "2s");
    let mut child = Proc::spawn(&["run"], &config);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    child.wait_ready(&http, admin).await;
    let token = idp.mint("demo-client", &["orders:read"]);
    assert_eq!(
        http.get(format!("{base}/orders/v1/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/orders/v1/open"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // SIGHUP: a new open resource appears.
    write(
        &d,
        "apis/orders.yaml",
        &orders_api(
            &echo.url(),
            "  - {verb: GET, target: /open, auth_type: None}\n",
        ),
    );
    child.signal("-HUP");
    let until = Instant::now() + Duration::from_secs(10);
    while http
        .get(format!("{base}/orders/v1/open"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < until, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM during a slow upstream request: the request completes, then the process exits.
    let slow = tokio::spawn({
        let (http, token, base) = (http.clone(), token.clone(), base.clone());
        async move {
            http.get(format!("{base}/orders/v1/2?delay_ms=1000"))
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal("-TERM");
    assert_eq!(
        slow.await
            .unwrap()
            .expect("the in-flight request completes"),
        200
    );
    let status = tokio::task::block_in_place(|| child.child.wait()).unwrap();
    assert!(status.success(), "{status:?}");
    // New connections are refused after shutdown.
    assert!(http
        .get(format!("{base}/orders/v1/1"))
        .send()
        .await
        .is_err());

    let lines = child.finish_log();
    let access: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "keygate::access")
        .collect();
    assert!(access.len() >= 4, "{lines:#?}");
    let first = &access[0]["fields"];
    assert_eq!(
        (first["api"].as_str(), first["resource"].as_str()),
        (Some("Orders"), Some("/{id}"))
    );
    assert_eq!(
        (
            first["status"].as_u64(),
            first["code"].as_str(),
            first["key_manager"].as_str()
        ),
        (Some(200), Some("ok"), Some("Asgardeo"))
    );
    assert_eq!(first["token"].as_str().map(str::len), Some(8));
    assert!(
        lines.iter().all(|l| !l.contains(&token)),
        "the token was logged"
    );
    assert!(lines.iter().any(|l| l.contains("configuration reloaded")));
}

#[test]
fn deploy_artifacts_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    // Every manifest parses (multi-document YAML).
    let mut configs = Vec::new();
    let mut kinds = Vec::new();
    for sub in ["k8s/ingress", "k8s/sidecar"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            for doc in docs {
                kinds.push(doc["kind"].as_str().unwrap_or("").to_string());
                if doc["kind"] == "ConfigMap" {
                    configs.push((p.clone(), doc["data"].clone()));
                }
            }
        }
    }
    for kind in [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "ServiceMonitor",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in deploy/k8s: {kinds:?}"
        );
    }
    // The config in each ConfigMap passes what `keygate check` checks.
    assert!(configs.len() >= 2);
    for (path, data) in configs {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in data.as_object().unwrap() {
            write(dir.path(), name, text.as_str().unwrap());
        }
        let env = |_: &str| None;
        Config::load_with_env(&dir.path().join("keygate.yaml"), env)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    // The dashboard's queries name metrics keygate exports.
    let exported: Vec<String> = {
        let m = keygate::metrics::Metrics::new();
        // Touch every labelled family once so that gather() lists it.
        String::from_utf8(m.render())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
            .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/keygate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("keygate_"))
        {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                exported.iter().any(|e| e == family) || source.contains(&format!("\"{family}\"")),
                "dashboard query names unknown metric {name}: {expr}"
            );
        }
    }
    // The Dockerfile runs as non-root and has a health check; the unit reloads with SIGHUP.
    let docker = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    assert!(docker.contains("USER") && docker.contains("HEALTHCHECK"));
    let unit = std::fs::read_to_string(root.join("systemd/keygate.service")).unwrap();
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "expr" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_exprs(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// A config for a `keygate run` process on free fixed ports: (path, proxy port, admin port).
fn process_config(
    d: &Path,
    idp: &keygate::devidp::DevIdp,
    echo: &keygate::echo::EchoServer,
    grace: &str,
) -> (std::path::PathBuf, u16, u16) {
    let (port, admin) = (
        keygate::server::free_port().unwrap(),
        keygate::server::free_port().unwrap(),
    );
    let config = main_config(idp, "")
        .replace(
            "admin_listen: 127.0.0.1:0",
            &format!("admin_listen: 127.0.0.1:{admin}"),
        )
        .replacen(
            "listen: 127.0.0.1:0",
            &format!("listen: 127.0.0.1:{port}"),
            1,
        )
        .replace("shutdown_grace: 2s", &format!("shutdown_grace: {grace}"))
        .replace(
            "threads: 1\n",
            &format!(
                "threads: 1\nupgrade_sock: {}\n",
                d.join("upgrade.sock").display()
            ),
        );
    write(d, "keygate.yaml", &config);
    write(d, "apis/orders.yaml", &orders_api(&echo.url(), ""));
    (d.join("keygate.yaml"), port, admin)
}

/// A `keygate run` child process, killed when dropped; its stderr is collected.
struct Proc {
    child: std::process::Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(args: &[&str], config: &Path) -> Proc {
        let mut child = keygate()
            .args(args)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Poll the admin listener until /readyz says ready.
    async fn wait_ready(&self, http: &reqwest::Client, admin: u16) {
        let until = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < until,
                "not ready: {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every stderr line, once the process has exited.
    fn finish_log(&mut self) -> Vec<String> {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pingora's graceful upgrade: a new process started with `--upgrade` takes the listening
/// sockets from the old one on SIGQUIT; requests never see a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_hands_the_sockets_to_an_upgraded_process() {
    let (_dir, d, idp, echo) = fixture().await;
    let (config, port, admin) = process_config(&d, &idp, &echo, "1s");
    let old = Proc::spawn(&["run"], &config);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    old.wait_ready(&http, admin).await;
    let token = idp.mint("demo-client", &["orders:read"]);
    // Load on fresh connections throughout the hand-over.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ok = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (http, token, base, stop, failures, ok) = (
            http.clone(),
            token.clone(),
            base.clone(),
            stop.clone(),
            failures.clone(),
            ok.clone(),
        );
        async move {
            while !stop.load(Ordering::Relaxed) {
                match http
                    .get(format!("{base}/orders/v1/1"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let new = Proc::spawn(&["run", "--upgrade"], &config);
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("-QUIT");
    // The old process exits after Pingora's close timeout (5 s) and the grace period.
    let mut old = old;
    let until = Instant::now() + Duration::from_secs(20);
    while old.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < until,
            "the old process did not exit: {:#?}",
            old.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served_before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:#?}\nnew: {:#?}",
        failures.lock().unwrap(),
        new.log.lock().unwrap()
    );
    assert!(
        ok.load(Ordering::Relaxed) > served_before,
        "the new process serves after the old one left"
    );
    assert!(
        old.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("listener sockets sent")),
        "{:#?}",
        old.log.lock().unwrap()
    );
}
