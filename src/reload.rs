//! Hot reload: SIGHUP (and `run --watch`) re-read the main config and every API definition,
//! validate them fully, and swap the runtime atomically. An invalid config is refused and logged
//! with every error while the old one keeps serving. Key managers whose configuration did not
//! change are kept as they are: their keys, refreshers and cached verdicts survive. Requests in
//! flight finish on the runtime they started with (each holds its `Arc`).
//!
//! Listener addresses and thread counts are fixed for the life of the process (Pingora binds
//! them at start); a reload that changes them is applied otherwise and warns.

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What can reload a running proxy.
#[derive(Clone)]
pub struct Reloader {
    /// The swapped snapshot.
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metrics (for `keygate_config_reloads_total`).
    pub metrics: Arc<Metrics>,
    /// The background runtime (key refreshers).
    pub bg: tokio::runtime::Handle,
    /// The main config file.
    pub path: PathBuf,
    /// One reload at a time (SIGHUP and --watch may fire together).
    pub lock: Arc<std::sync::Mutex<()>>,
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid; the old one keeps serving.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The runtime could not be built from a valid configuration.
    #[error("cannot build the new runtime: {0}")]
    Build(String),
}

impl Reloader {
    /// Load, validate, build, swap.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.try_reload();
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(()) => log::info!("configuration reloaded from {}", self.path.display()),
            Err(e) => log::error!("reload refused, the previous configuration keeps serving: {e}"),
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let config = Config::load(&self.path)?;
        let old = self.runtime.load_full();
        let (a, b) = (&old.config, &config);
        if a.listen != b.listen || a.admin_listen != b.admin_listen || a.threads != b.threads {
            log::warn!("listen, admin_listen and threads apply at the next start, not on reload");
        }
        let new = Runtime::rebuild(config, self.bg.clone(), self.metrics.clone(), Some(&old))
            .map_err(ReloadError::Build)?;
        new.auth.start_refreshers();
        self.runtime.store(Arc::new(new));
        Ok(())
    }

    /// Reload on every SIGHUP (spawned on the background runtime).
    pub fn watch_sighup(&self) {
        let this = self.clone();
        self.bg.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                log::error!("cannot listen for SIGHUP; reload by signal is off");
                return;
            };
            while hup.recv().await.is_some() {
                let r = this.clone();
                // Loading reads files and resolves names: keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
        });
    }

    /// Reload when the main config or any API source changes (polled every `every`).
    pub fn watch_files(&self, every: Duration) {
        let this = self.clone();
        self.bg.spawn(async move {
            let mut last = fingerprint(&this.sources());
            loop {
                tokio::time::sleep(every).await;
                let now = fingerprint(&this.sources());
                if now != last {
                    last = now;
                    let r = this.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                }
            }
        });
    }

    fn sources(&self) -> Vec<PathBuf> {
        let rt = self.runtime.load();
        let mut v = vec![self.path.clone()];
        v.extend(rt.config.apis.iter().map(|a| a.source.clone()));
        if let Some(dir) = self.path.parent() {
            // New files in the API folders count too.
            v.push(dir.join("apis"));
        }
        v
    }
}

/// Modification times and sizes of `paths` (folders: their entries too).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    fn stat(p: &Path) -> (PathBuf, Option<SystemTime>, u64) {
        let m = std::fs::metadata(p).ok();
        (
            p.to_path_buf(),
            m.as_ref().and_then(|m| m.modified().ok()),
            m.map_or(0, |m| m.len()),
        )
    }
    let mut out = Vec::new();
    for p in paths {
        out.push(stat(p));
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut entries: Vec<_> =
                    rd.filter_map(|e| e.ok().map(|e| stat(&e.path()))).collect();
                entries.sort();
                out.extend(entries);
            }
        }
    }
    out
}
