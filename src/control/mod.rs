//! The control plane: `keygate sync` puts the APIs' scopes into Asgardeo's global API resource
//! (default `APIM_GLOBAL_SCOPES`) and, optionally, their role bindings into SCIM2 roles, as
//! WSO2's Asgardeo connector does (reference §5), but as a diff: WSO2 deletes and re-adds every
//! scope of an API on each save (which can drop application authorizations); keygate adds what
//! is missing, updates what changed and deletes only with `--prune`.
//!
//! Every check runs before the first call. Data-plane modules never import this module (a test
//! enforces it), so the proxy never holds management credentials in its code paths.

pub mod client;

use crate::catalog::{ApiDef, KeyManagerSelector};
use crate::config::{Config, KeyManagerConfig};
use client::{Client, RemoteRole, RemoteScope};
use std::collections::{BTreeMap, BTreeSet};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Problems found before any call, each naming its API file.
    #[error("sync refused before any call:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A management call failed (after retries).
    #[error("{0}")]
    Http(String),
}

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Print the plan; make no write call.
    pub dry_run: bool,
    /// Delete scopes of the global resource that no API declares (except protected ones).
    pub prune: bool,
}

/// One planned or applied change (fields: the scope or role and what changes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Change {
    /// A scope to add.
    AddScope(RemoteScope),
    /// A scope whose display name or description differs.
    UpdateScope { from: RemoteScope, to: RemoteScope },
    /// A scope no API declares (deleted with `--prune` unless protected).
    Orphan {
        name: String,
        deleted: bool,
        protected: bool,
    },
    /// A role to create with these scopes.
    CreateRole { role: String, scopes: Vec<String> },
    /// A role whose permissions change.
    UpdateRole {
        role: String,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// A bound role that does not exist and will not be created (`create_roles: false`).
    MissingRole { role: String, scopes: Vec<String> },
    /// The global resource is created.
    CreateResource { name: String },
}

impl Change {
    /// Does applying it write anything?
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Change::MissingRole { .. } | Change::Orphan { deleted: false, .. }
        )
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::CreateResource { name } => {
                write!(f, "+ API resource {name} (requiresAuthorization: true)")
            }
            Change::AddScope(s) => write!(
                f,
                "+ scope {} ({:?}, {:?})",
                s.name, s.display_name, s.description
            ),
            Change::UpdateScope { from, to } => write!(
                f,
                "~ scope {}: display name {:?} -> {:?}, description {:?} -> {:?}",
                to.name, from.display_name, to.display_name, from.description, to.description
            ),
            Change::Orphan {
                name,
                deleted: true,
                ..
            } => write!(f, "- scope {name} (no API declares it)"),
            Change::Orphan {
                name,
                protected: true,
                ..
            } => write!(f, "  scope {name}: no API declares it; protected, kept"),
            Change::Orphan { name, .. } => {
                write!(f, "  scope {name}: no API declares it (--prune deletes it)")
            }
            Change::CreateRole { role, scopes } => write!(f, "+ role {role}: {}", scopes.join(" ")),
            Change::UpdateRole {
                role,
                added,
                removed,
            } => {
                write!(
                    f,
                    "~ role {role}: +[{}] -[{}]",
                    added.join(" "),
                    removed.join(" ")
                )
            }
            Change::MissingRole { role, scopes } => {
                write!(
                    f,
                    "! role {role} does not exist (create_roles: false); not bound: {}",
                    scopes.join(" ")
                )
            }
        }
    }
}

/// The outcome for one key manager.
#[derive(Debug, Clone)]
pub struct KmReport {
    /// Key manager name.
    pub key_manager: String,
    /// Planned (dry run) or applied changes.
    pub changes: Vec<Change>,
    /// `METHOD path` of every management call.
    pub calls: Vec<String>,
}

/// The desired scopes of one key manager: name → (scope, roles, declaring API file).
#[derive(Debug, Default)]
struct Desired {
    scopes: BTreeMap<String, RemoteScope>,
    roles: BTreeMap<String, BTreeSet<String>>,
}

fn serves(api: &ApiDef, km: &str) -> bool {
    match &api.key_managers {
        KeyManagerSelector::All => true,
        KeyManagerSelector::Named(n) => n.iter().any(|x| x == km),
    }
}

/// Asgardeo role name for a WSO2 role (reference §5.5): with role creation, `Internal/x` → `x`
/// and PRIMARY `x` → `apim_primary_x`; without it, names are used as written.
pub fn asgardeo_role_name(role: &str, create_roles: bool) -> String {
    match (create_roles, role.strip_prefix("Internal/")) {
        (false, _) => role.to_string(),
        (true, Some(x)) => x.to_string(),
        (true, None) => format!("apim_primary_{role}"),
    }
}

/// Build and check the desired state of `km` from `apis`. All problems at once.
fn desired(
    apis: &[ApiDef],
    km: &KeyManagerConfig,
    create_roles: bool,
) -> Result<Desired, Vec<String>> {
    let mut d = Desired::default();
    let mut origin: BTreeMap<String, &ApiDef> = BTreeMap::new();
    let mut errors = Vec::new();
    for api in apis.iter().filter(|a| serves(a, &km.name)) {
        let file = api.source.display();
        for s in &api.scopes {
            if s.name.to_ascii_lowercase().starts_with("internal") {
                errors.push(format!(
                    "{file}: scope {:?}: Asgardeo reserves names starting with \"internal\"",
                    s.name
                ));
                continue;
            }
            for r in &s.roles {
                if r.starts_with("Application/") {
                    errors.push(format!("{file}: scope {:?}: role {r:?}: Application/ roles cannot carry API scopes", s.name));
                }
            }
            let scope = RemoteScope {
                name: s.name.clone(),
                display_name: s.display_name.clone(),
                description: s.description.clone(),
            };
            match d.scopes.get(&s.name) {
                Some(prev) if *prev != scope => errors.push(format!(
                    "{file}: scope {:?} is also declared by {} with a different display name or description",
                    s.name,
                    origin[&s.name].source.display()
                )),
                Some(_) => {}
                None => {
                    d.scopes.insert(s.name.clone(), scope);
                    origin.insert(s.name.clone(), api);
                }
            }
            for r in s.roles.iter().filter(|r| !r.starts_with("Application/")) {
                d.roles
                    .entry(asgardeo_role_name(r, create_roles))
                    .or_default()
                    .insert(s.name.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(d)
    } else {
        Err(errors)
    }
}

fn protected(name: &str, patterns: &[regex::Regex]) -> bool {
    patterns.iter().any(|p| p.is_match(name))
}

/// Validate everything for every key manager with a connector, before any call.
pub fn check(config: &Config) -> Result<(), SyncError> {
    let mut errors = Vec::new();
    let kms: Vec<&KeyManagerConfig> = config
        .key_managers
        .iter()
        .filter(|k| k.connector.is_some())
        .collect();
    if kms.is_empty() {
        errors.push("no key manager has a `connector` block: nothing to sync".to_string());
    }
    for km in kms {
        let c = km.connector.as_ref().expect("filtered");
        if let Err(e) = desired(&config.apis, km, c.create_roles.unwrap_or(false)) {
            errors.extend(e);
        }
        if km.client_id.is_none() || km.client_secret.is_none() {
            errors.push(format!(
                "key manager {}: client_id and client_secret are required to sync",
                km.name
            ));
        }
        if km.token_endpoint.is_none() {
            errors.push(format!(
                "key manager {}: token_endpoint is required to sync",
                km.name
            ));
        }
        if c.api_resource_management_endpoint.is_none() {
            errors.push(format!(
                "key manager {}: connector.api_resource_management_endpoint is required",
                km.name
            ));
        }
        let binds_roles = c.create_roles.unwrap_or(false)
            || desired(&config.apis, km, false).is_ok_and(|d| !d.roles.is_empty());
        if binds_roles && c.roles_endpoint.is_none() {
            errors.push(format!(
                "key manager {}: connector.roles_endpoint is required for role bindings",
                km.name
            ));
        }
        for p in &c.protected_scopes {
            if let Err(e) = regex::Regex::new(p) {
                errors.push(format!(
                    "key manager {}: protected_scopes {p:?}: {e}",
                    km.name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Invalid(errors))
    }
}

/// Sync every key manager that has a connector.
pub async fn sync(config: &Config, opts: SyncOptions) -> Result<Vec<KmReport>, SyncError> {
    check(config)?;
    let mut reports = Vec::new();
    for km in config.key_managers.iter().filter(|k| k.connector.is_some()) {
        reports.push(sync_one(config, km, opts).await?);
    }
    Ok(reports)
}

async fn sync_one(
    config: &Config,
    km: &KeyManagerConfig,
    opts: SyncOptions,
) -> Result<KmReport, SyncError> {
    let c = km.connector.clone().unwrap_or_default();
    let create_roles = c.create_roles.unwrap_or(false);
    let d = desired(&config.apis, km, create_roles).map_err(SyncError::Invalid)?;
    let patterns: Vec<regex::Regex> = c
        .protected_scopes
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    let resources = c
        .api_resource_management_endpoint
        .clone()
        .unwrap_or_default();
    let resource_name = c
        .global_scopes_resource
        .clone()
        .unwrap_or_else(|| "APIM_GLOBAL_SCOPES".into());
    let token_endpoint = km
        .token_endpoint
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let secret = km
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let mut client = Client::connect(
        &token_endpoint,
        km.client_id.as_deref().unwrap_or(""),
        &secret,
    )
    .await?;
    let mut changes = Vec::new();

    // The global resource and its scopes.
    let (id, remote) = match client.find_resource(&resources, &resource_name).await? {
        Some(id) => {
            let scopes = client.scopes(&resources, &id).await?;
            (Some(id), scopes)
        }
        None if c.create_global_resource.unwrap_or(false) => {
            changes.push(Change::CreateResource { name: resource_name.clone() });
            (None, Vec::new())
        }
        None => {
            return Err(SyncError::Http(format!(
                "API resource {resource_name:?} not found at {resources}; create it in Asgardeo (Identifier \
                 /api/server/v1/scope-resource, requires authorization) or set connector.create_global_resource: true"
            )))
        }
    };
    let remote_by_name: BTreeMap<&str, &RemoteScope> =
        remote.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut to_add = Vec::new();
    for (name, want) in &d.scopes {
        match remote_by_name.get(name.as_str()) {
            None => to_add.push(want.clone()),
            Some(have) if *have != want => changes.push(Change::UpdateScope {
                from: (*have).clone(),
                to: want.clone(),
            }),
            Some(_) => {}
        }
    }
    changes.extend(to_add.iter().cloned().map(Change::AddScope));
    for s in &remote {
        if !d.scopes.contains_key(&s.name) {
            let is_protected = protected(&s.name, &patterns);
            changes.push(Change::Orphan {
                name: s.name.clone(),
                deleted: opts.prune && !is_protected,
                protected: is_protected,
            });
        }
    }

    // Roles: each bound role carries exactly its bound scopes among the scopes the APIs declare.
    // Orphaned and protected scopes in roles are left alone (only --prune touches orphans, and
    // only in the resource).
    let managed: BTreeSet<String> = d.scopes.keys().cloned().collect();
    let mut role_updates: Vec<(RemoteRole, Vec<(String, String)>)> = Vec::new();
    let mut role_creates: Vec<(String, Vec<(String, String)>)> = Vec::new();
    if let Some(roles_base) = c
        .roles_endpoint
        .clone()
        .filter(|_| !d.roles.is_empty() || create_roles)
    {
        let existing = client.all_roles(&roles_base).await?;
        let display = |n: &str| {
            d.scopes
                .get(n)
                .map(|s| s.display_name.clone())
                .unwrap_or_else(|| n.to_string())
        };
        for (role, bound) in &d.roles {
            match existing.iter().find(|r| &r.name == role) {
                Some(r) => {
                    let have: BTreeSet<&String> = r
                        .permissions
                        .iter()
                        .map(|(v, _)| v)
                        .filter(|v| managed.contains(*v))
                        .collect();
                    let want: BTreeSet<&String> = bound.iter().collect();
                    if have != want {
                        let added: Vec<String> =
                            want.difference(&have).map(|s| s.to_string()).collect();
                        let removed: Vec<String> =
                            have.difference(&want).map(|s| s.to_string()).collect();
                        let mut perms: Vec<(String, String)> = r
                            .permissions
                            .iter()
                            .filter(|(v, _)| !managed.contains(v))
                            .cloned()
                            .collect();
                        perms.extend(bound.iter().map(|s| (s.clone(), display(s))));
                        changes.push(Change::UpdateRole {
                            role: role.clone(),
                            added,
                            removed,
                        });
                        role_updates.push((r.clone(), perms));
                    }
                }
                None if create_roles => {
                    changes.push(Change::CreateRole {
                        role: role.clone(),
                        scopes: bound.iter().cloned().collect(),
                    });
                    role_creates.push((
                        role.clone(),
                        bound.iter().map(|s| (s.clone(), display(s))).collect(),
                    ));
                }
                None => changes.push(Change::MissingRole {
                    role: role.clone(),
                    scopes: bound.iter().cloned().collect(),
                }),
            }
        }
        // Roles no API binds any more lose the managed scopes they still carry.
        for r in existing.iter().filter(|r| !d.roles.contains_key(&r.name)) {
            let stale: Vec<String> = r
                .permissions
                .iter()
                .map(|(v, _)| v.clone())
                .filter(|v| d.scopes.contains_key(v))
                .collect();
            if !stale.is_empty() {
                let perms: Vec<(String, String)> = r
                    .permissions
                    .iter()
                    .filter(|(v, _)| !d.scopes.contains_key(v))
                    .cloned()
                    .collect();
                changes.push(Change::UpdateRole {
                    role: r.name.clone(),
                    added: vec![],
                    removed: stale,
                });
                role_updates.push((r.clone(), perms));
            }
        }
    }

    if !opts.dry_run {
        let id = match id {
            Some(id) => id,
            None => {
                client
                    .create_resource(&resources, &resource_name, "/api/server/v1/scope-resource")
                    .await?
            }
        };
        if !to_add.is_empty() {
            client.add_scopes(&resources, &id, &to_add).await?;
        }
        for ch in &changes {
            match ch {
                Change::UpdateScope { to, .. } => client.update_scope(&resources, &id, to).await?,
                Change::Orphan {
                    name,
                    deleted: true,
                    ..
                } => client.delete_scope(&resources, &id, name).await?,
                _ => {}
            }
        }
        if let Some(roles_base) = &c.roles_endpoint {
            for (role, perms) in &role_creates {
                client.create_role(roles_base, role, perms).await?;
            }
            for (r, perms) in &role_updates {
                client.set_permissions(roles_base, &r.id, perms).await?;
            }
        }
    }
    Ok(KmReport {
        key_manager: km.name.clone(),
        changes,
        calls: client.calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_the_connector() {
        assert_eq!(asgardeo_role_name("manager", true), "apim_primary_manager");
        assert_eq!(asgardeo_role_name("Internal/publisher", true), "publisher");
        assert_eq!(
            asgardeo_role_name("Internal/publisher", false),
            "Internal/publisher"
        );
        assert_eq!(asgardeo_role_name("manager", false), "manager");
    }
}
