//! The test harness: the embedded identity provider and the echo upstream on port 0 on the test's
//! runtime, and the proxy in-process on port 0 (its own Pingora runtimes, on a thread).

use keygate::config::Config;
use keygate::demo::demo_config;
use keygate::devidp::DevIdp;
use keygate::echo::EchoServer;
use keygate::server::RunningProxy;
use std::time::{Duration, Instant};

pub struct Env {
    pub idp: DevIdp,
    pub echo: EchoServer,
    pub proxy: RunningProxy,
    pub http: reqwest::Client,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    /// The WSO2 fault code.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

impl Env {
    /// The demo configuration (one Asgardeo-shaped key manager, API Orders).
    pub async fn start() -> Env {
        Self::start_with(|_, _, _| {}).await
    }

    /// The demo configuration, changed by `f` before the proxy starts.
    pub async fn start_with(f: impl FnOnce(&mut Config, &DevIdp, &EchoServer)) -> Env {
        Self::start_with_idp(DevIdp::start().await.expect("idp"), f).await
    }

    /// As [`Env::start_with`] with a provider prepared by the caller (e.g. down at start).
    pub async fn start_with_idp(
        idp: DevIdp,
        f: impl FnOnce(&mut Config, &DevIdp, &EchoServer),
    ) -> Env {
        let echo = EchoServer::start().await.expect("echo");
        let mut config = demo_config(&idp, &echo.url());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.threads = 1;
        f(&mut config, &idp, &echo);
        let proxy = tokio::task::spawn_blocking(move || RunningProxy::start(config))
            .await
            .unwrap()
            .expect("proxy starts");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        Env {
            idp,
            echo,
            proxy,
            http,
        }
    }

    /// Started from the config file at `path` (listeners on port 0, one thread), and ready.
    pub async fn from_file(idp: DevIdp, path: &std::path::Path) -> Env {
        let loaded = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        let env = Self::start_with_idp(idp, move |c, _, _| {
            let (listen, admin) = (c.listen, c.admin_listen);
            *c = loaded;
            c.listen = listen;
            c.admin_listen = admin;
            c.threads = 1;
        })
        .await;
        env.wait_ready(Duration::from_secs(10)).await;
        env
    }

    /// Started, and every key manager ready.
    pub async fn ready() -> Env {
        let env = Self::start().await;
        env.wait_ready(Duration::from_secs(10)).await;
        env
    }

    /// Poll /readyz until it says ready.
    pub async fn wait_ready(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let r = self.admin("/readyz").await;
            if r.status == 200 {
                return;
            }
            assert!(
                Instant::now() < until,
                "not ready in {within:?}: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proxy.url())
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}"));
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// GET `path` with a fresh token carrying `orders:read`; the status.
    pub async fn read_status(&self, path: &str) -> u16 {
        self.get(path, Some(&self.token(&["orders:read"])))
            .await
            .status
    }

    /// GET `path` once per token, all at the same time; the statuses in token order.
    pub async fn burst(&self, path: &str, tokens: Vec<String>) -> Vec<u16> {
        let tasks: Vec<_> = tokens
            .into_iter()
            .map(|t| {
                let req = self.http.get(self.url(path)).bearer_auth(t);
                tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    pub async fn admin(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.proxy.admin_url())))
            .await
    }

    /// The value of one sample in /metrics (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.admin("/metrics").await.text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Wait until a sample reaches `want`: request counters are recorded in Pingora's logging
    /// phase, after the client already has its response.
    pub async fn metric_reaches(&self, sample: &str, want: f64) -> f64 {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(sample).await;
            if v >= want || Instant::now() > until {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A token from the provider's current key for `demo-client`.
    pub fn token(&self, scopes: &[&str]) -> String {
        self.idp.mint("demo-client", scopes)
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `../shared/testdata/<rel>`, read at test time.
pub fn shared(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata")
        .join(rel)
}

/// Write `text` to `dir/name`, creating folders.
pub fn write(dir: &std::path::Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The `keygate` binary as a process.
pub fn keygate() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
}

/// Assert that a `keygate` process succeeded (its stdout and stderr in the message); its stdout.
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
