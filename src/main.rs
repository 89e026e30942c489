//! The `keygate` command line. `anyhow` lives only here, at the edge.

#![forbid(unsafe_code)]

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
use keygate::config::{Certificates, Config, ValidationMethod, DEFAULT_CONFIG_PATH};
use std::path::PathBuf;
use std::process::ExitCode;

// The proxy allocates small buffers per request (headers, bodies); glibc malloc showed as ~10 %
// of the proxy's CPU under load (perf, docs/benchmarks.md). mimalloc is the allocator Pingora
// deployments commonly pick for this.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keygate",
    version,
    about = "Token-validating ingress proxy and sidecar for WSO2-style APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy. SIGHUP reloads the configuration; SIGTERM drains and exits.
    Run {
        /// Main configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Also reload when the config file or an API definition changes (polled every 2 s).
        #[arg(long)]
        watch: bool,
        /// Take the listening sockets over from a running keygate that was sent SIGQUIT
        /// (zero-downtime binary upgrade, through `upgrade_sock`).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the configuration and every API definition; print a summary or every error.
    Check {
        /// Main configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Start an embedded identity provider, an echo upstream and the proxy on loopback, and print
    /// curl commands to try.
    Demo,
    /// Put the APIs' scopes (and role bindings) into Asgardeo, for every key manager with a
    /// `connector` block. Exit 0 when in sync or applied, 1 on error, 2 when --dry-run finds
    /// changes.
    Sync {
        /// Main configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print the plan; make no write call.
        #[arg(long)]
        dry_run: bool,
        /// Delete scopes of the global resource that no API declares (except protected_scopes).
        #[arg(long)]
        prune: bool,
    },
    /// Run the embedded Asgardeo-shaped identity provider alone (for load tests and trying
    /// things by hand), optionally writing its JWKS and token pools to a folder.
    Devidp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: std::net::SocketAddr,
        /// Folder for jwks.json, idp.env and token pools.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Size of the large token pools.
        #[arg(long, default_value_t = 10_000)]
        tokens: usize,
    },
    /// Read an OpenID Connect discovery document and print a key manager block for
    /// config/keygate.yaml (like the WSO2 Admin Portal's Import button).
    ImportKm {
        /// The well-known URL, e.g. https://api.asgardeo.io/t/acme/oauth2/token/.well-known/openid-configuration
        url: String,
        /// Name of the key manager. Defaults to Asgardeo-<org> or the host name.
        #[arg(long)]
        name: Option<String>,
        /// asgardeo or oidc. Defaults to asgardeo for Asgardeo-shaped URLs (/t/<org>/).
        #[arg(long = "type", value_parser = ["asgardeo", "oidc"])]
        kind: Option<String>,
    },
}

fn sync(config: &std::path::Path, dry_run: bool, prune: bool) -> Result<ExitCode> {
    let config = load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = keygate::control::SyncOptions { dry_run, prune };
    let reports = rt
        .block_on(keygate::control::sync(&config, opts))
        .map_err(|e| anyhow!("{e}"))?;
    let mut pending = false;
    for r in &reports {
        let verb = if dry_run { "plan" } else { "applied" };
        let writes = r.changes.iter().filter(|c| c.writes()).count();
        println!(
            "key manager {}: {verb}: {} change(s)",
            r.key_manager, writes
        );
        for c in &r.changes {
            println!("  {c}");
        }
        println!("  calls: {}", r.calls.join(", "));
        pending |= dry_run && writes > 0;
    }
    Ok(if pending {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn import_km(url: &str, name: Option<&str>, kind: Option<&str>) -> Result<()> {
    let url = url::Url::parse(url).map_err(|e| anyhow!("{url:?} is not a URL: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder().build()?;
    let doc = rt
        .block_on(keygate::auth::discovery::fetch(
            &http,
            &url,
            std::time::Duration::from_secs(10),
        ))
        .map_err(|e| anyhow!("{url}: {e}"))?;
    println!("key_managers:");
    print!(
        "{}",
        keygate::auth::discovery::key_manager_yaml(&doc, &url, name, kind)
    );
    Ok(())
}

fn load(path: &std::path::Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

fn summary(c: &Config) {
    println!("{}: OK", c.source.display());
    println!(
        "  listen {}  admin {}  threads {}",
        c.listen, c.admin_listen, c.threads
    );
    println!("  key managers: {}", c.key_managers.len());
    for km in &c.key_managers {
        let keys = match &km.certificates {
            Some(Certificates::Jwks(u)) => format!("JWKS {u}"),
            Some(Certificates::Pem(_)) => "PEM".to_string(),
            None => "no keys".to_string(),
        };
        let method = match km.validation {
            ValidationMethod::SelfValidateJwt => "self_validate_jwt",
            ValidationMethod::Introspect => "introspect",
        };
        println!(
            "    {} ({:?}, {method}) issuer {} ({keys})",
            km.name, km.kind, km.issuer
        );
    }
    println!(
        "  APIs: {}  resources: {}",
        c.apis.len(),
        c.resource_count()
    );
    for a in &c.apis {
        let default = match a.base_paths().get(1) {
            Some(b) => format!(" (+ {b})"),
            None => String::new(),
        };
        let bases = a.base_paths();
        let from = a
            .source
            .strip_prefix(c.source.parent().unwrap_or(std::path::Path::new("")))
            .unwrap_or(&a.source);
        println!(
            "    {} {}  {}{default} -> {}  [{} resources, {} scopes] from {}",
            a.name,
            a.version,
            bases[0],
            a.upstream.url,
            a.resources.len(),
            a.scopes.len(),
            from.display()
        );
    }
}

/// Logging through tracing (`RUST_LOG` filters; Pingora's `log` records are bridged).
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            watch,
            upgrade,
        } => load(&config).and_then(|c| {
            init_logging(c.log_json);
            keygate::server::run_forever(c, watch, upgrade)
                .map_err(|e| anyhow!(e))
                .map(|_| ())
        }),
        Command::Check { config } => load(&config).map(|c| summary(&c)),
        Command::Demo => {
            init_logging(false);
            keygate::demo::run().map_err(|e| anyhow!(e))
        }
        Command::ImportKm { url, name, kind } => import_km(&url, name.as_deref(), kind.as_deref()),
        Command::Devidp {
            listen,
            out,
            tokens,
        } => {
            init_logging(false);
            keygate::devidp::run_standalone(listen, out.as_deref(), tokens).map_err(|e| anyhow!(e))
        }
        Command::Sync {
            config,
            dry_run,
            prune,
        } => {
            init_logging(false);
            match sync(&config, dry_run, prune) {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
