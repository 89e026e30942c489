//! Assembly: a validated [`Config`] becomes a Pingora server with the proxy service, the admin
//! service, and a background runtime for all provider I/O (JWKS refreshes).
//!
//! Our CLI owns argv, so Pingora's own option parsing is never used: the flags we have are mapped
//! onto `ServerConf`. [`RunningProxy`] runs the same server on a thread with a shutdown handle,
//! for `keygate demo` and the integration tests.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::reload::{ReloadError, Reloader};
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pieces that outlive the Pingora server object.
pub struct Parts {
    /// The current runtime.
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Background runtime driving provider I/O.
    pub background: tokio::runtime::Runtime,
    /// Serialises reloads.
    pub reload_lock: Arc<std::sync::Mutex<()>>,
}

impl Parts {
    /// A reloader for this proxy's runtime, reading `path`.
    pub fn reloader(&self, path: PathBuf) -> Reloader {
        Reloader {
            runtime: self.runtime.clone(),
            metrics: self.metrics.clone(),
            bg: self.background.handle().clone(),
            path,
            lock: self.reload_lock.clone(),
        }
    }
}

/// Build the background runtime and the request runtime, and start the key refreshers.
pub fn build_parts(config: Config) -> Result<Parts, String> {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("keygate-bg")
        .enable_all()
        .build()
        .map_err(|e| format!("background runtime: {e}"))?;
    let metrics = Arc::new(Metrics::new());
    let runtime = Runtime::new(config, background.handle().clone(), metrics.clone())?;
    runtime.auth.start_refreshers();
    Ok(Parts {
        runtime: Arc::new(ArcSwap::from_pointee(runtime)),
        metrics,
        background,
        reload_lock: Arc::new(std::sync::Mutex::new(())),
    })
}

/// The Pingora server for `parts`, listening where the config says. With `upgrade`, it takes the
/// listening sockets over from a running keygate (which was sent SIGQUIT) through
/// `upgrade_sock` instead of binding them.
pub fn build_server(parts: &Parts, upgrade: bool) -> Server {
    let rt = parts.runtime.load();
    let config = &rt.config;
    // SIGTERM (Pingora): stop accepting at once, let in-flight requests run for the grace
    // period (a fixed sleep: Pingora waits it out even when nothing is in flight), then stop the
    // runtimes, cancelling what is left after one more second.
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.upgrade_sock.to_string_lossy().into_owned(),
        ca_file: config
            .upstream_ca_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let gateway = Gateway {
        runtime: parts.runtime.clone(),
        metrics: parts.metrics.clone(),
        access_log: config.access_log,
    };
    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "keygate");
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);

    let admin_app = AdminApp {
        runtime: parts.runtime.clone(),
        metrics: parts.metrics.clone(),
    };
    let mut admin = Service::new("keygate-admin".to_string(), HttpServer::new_app(admin_app));
    admin.threads = Some(1);
    admin.add_tcp(&config.admin_listen.to_string());
    server.add_service(admin);
    server
}

/// Run until a signal: SIGINT fast, SIGTERM graceful, SIGQUIT graceful upgrade (Pingora);
/// SIGHUP reloads, and so does a changed file with `watch`.
pub fn run_forever(
    config: Config,
    watch: bool,
    upgrade: bool,
) -> Result<std::convert::Infallible, String> {
    let path = config.source.clone();
    let parts = build_parts(config)?;
    let server = build_server(&parts, upgrade);
    let reloader = parts.reloader(path);
    reloader.watch_sighup();
    if watch {
        reloader.watch_files(Duration::from_secs(2));
    }
    // `parts.background` must live as long as the process; run_forever never returns.
    let _keep = parts;
    server.run_forever()
}

struct NotifyWatch(Arc<tokio::sync::Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifyWatch {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// A free loopback port (bind port 0, read it, release it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A proxy running on its own thread.
pub struct RunningProxy {
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// Where the admin service listens.
    pub admin_addr: SocketAddr,
    /// Metrics of this instance.
    pub metrics: Arc<Metrics>,
    /// Its runtime snapshot holder.
    pub runtime: Arc<ArcSwap<Runtime>>,
    shutdown: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    background: Option<tokio::runtime::Runtime>,
    reload_lock: Arc<std::sync::Mutex<()>>,
}

impl RunningProxy {
    /// Start `config`; a listen or admin port of 0 is replaced by a free port. Returns once both
    /// listeners accept connections.
    pub fn start(mut config: Config) -> Result<Self, String> {
        for addr in [&mut config.listen, &mut config.admin_listen] {
            if addr.port() == 0 {
                addr.set_port(free_port().map_err(|e| e.to_string())?);
            }
        }
        let (proxy_addr, admin_addr) = (config.listen, config.admin_listen);
        let parts = build_parts(config)?;
        let server = build_server(&parts, false);
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let watch = NotifyWatch(shutdown.clone());
        let thread = std::thread::Builder::new()
            .name("keygate-server".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(watch),
                })
            })
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        for addr in [proxy_addr, admin_addr] {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                if started.elapsed() > Duration::from_secs(10) {
                    return Err(format!("{addr} did not start listening"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Self {
            proxy_addr,
            admin_addr,
            metrics: parts.metrics,
            runtime: parts.runtime,
            shutdown,
            thread: Some(thread),
            background: Some(parts.background),
            reload_lock: parts.reload_lock,
        })
    }

    /// `http://<proxy_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    /// `http://<admin_addr>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Reload from `config.source` (what SIGHUP does).
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.reloader().reload()
    }

    /// The reloader of this proxy.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            runtime: self.runtime.clone(),
            metrics: self.metrics.clone(),
            bg: self.background.as_ref().expect("running").handle().clone(),
            path: self.runtime.load().config.source.clone(),
            lock: self.reload_lock.clone(),
        }
    }

    /// Stop and wait for the server thread.
    pub fn stop(&mut self) {
        self.shutdown.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(bg) = self.background.take() {
            bg.shutdown_background();
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
