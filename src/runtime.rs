//! Everything a request needs, built from one validated [`Config`]: the route table, the APIs
//! with their allowed key managers resolved to indices, and the authenticator.
//!
//! One `Runtime` is one consistent snapshot of the configuration; a request holds an `Arc` of
//! it from its first phase to its last.

use crate::auth::{Authenticator, KmPolicy};
use crate::catalog::route::RouteTable;
use crate::catalog::{ApiDef, KeyManagerSelector};
use crate::config::Config;
use crate::enrich::HeaderNames;
use crate::metrics::Metrics;
use std::sync::Arc;

/// An API with its key manager permissions resolved.
pub struct ApiRuntime {
    /// The definition.
    pub def: ApiDef,
    /// Which key managers may validate its tokens, in which order.
    pub kms: KmPolicy,
}

/// The snapshot.
pub struct Runtime {
    /// The configuration it was built from.
    pub config: Config,
    /// APIs in table order.
    pub apis: Vec<ApiRuntime>,
    /// The compiled route table.
    pub routes: RouteTable,
    /// Key managers and the verdict cache.
    pub auth: Authenticator,
    /// The identity headers' names, prepared for the upstream request.
    pub header_names: HeaderNames,
}

impl Runtime {
    /// Build (no network I/O; call `auth.start_refreshers()` to begin fetching keys).
    pub fn new(
        config: Config,
        bg: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Self::rebuild(config, bg, metrics, None)
    }

    /// Build, keeping from `previous` the key managers whose configuration is unchanged and the
    /// caches (see [`Authenticator::rebuild`]).
    pub fn rebuild(
        config: Config,
        bg: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        previous: Option<&Runtime>,
    ) -> Result<Self, String> {
        let auth = Authenticator::rebuild(&config, bg, metrics, previous.map(|p| &p.auth))?;
        let names: Vec<&str> = auth.key_managers().iter().map(|k| k.name()).collect();
        let apis = config
            .apis
            .iter()
            .map(|def| ApiRuntime {
                kms: match &def.key_managers {
                    KeyManagerSelector::All => KmPolicy::all(names.len()),
                    KeyManagerSelector::Named(list) => KmPolicy {
                        allowed: names.iter().map(|n| list.iter().any(|l| l == n)).collect(),
                        order: list
                            .iter()
                            .filter_map(|l| names.iter().position(|n| n == l))
                            .collect(),
                    },
                },
                def: def.clone(),
            })
            .collect();
        let routes = RouteTable::new(&config.apis);
        Ok(Self {
            header_names: HeaderNames::new(&config.upstream_headers),
            config,
            apis,
            routes,
            auth,
        })
    }
}
