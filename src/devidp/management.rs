//! Asgardeo's management APIs as the connector uses them (reference §5.4, §5.5, §6.5): API
//! Resource Management (`/api/server/v1/api-resources`) and SCIM2 Roles v2 (`/scim2/v2/Roles`).
//! Requests need a management token from this provider's token endpoint carrying the right
//! `internal_*` scope, and payloads are checked for the shapes Asgardeo takes, so `keygate sync`
//! is tested against the same contract. Tests read every call and can make the next ones answer
//! 429 with `Retry-After`.

use crate::loopback;
use http_body_util::BodyExt;
use hyper::Response;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One scope of an API resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Key.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
}

/// An API resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Identifier.
    pub identifier: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
}

/// A role.
#[derive(Debug, Clone)]
pub struct Role {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Permission values (scope keys).
    pub permissions: Vec<String>,
}

/// State of the management APIs.
#[derive(Default)]
pub struct Management {
    /// API resources.
    pub resources: Mutex<Vec<Resource>>,
    /// Roles.
    pub roles: Mutex<Vec<Role>>,
    /// `METHOD path` of every management call.
    pub calls: Mutex<Vec<String>>,
    fail_next: AtomicU64,
    seq: AtomicU64,
}

fn err(status: u16, msg: &str) -> Response<loopback::Body> {
    loopback::json(status, &json!({"code": "ERR", "message": msg}))
}

fn scope_json(s: &Scope) -> Value {
    json!({"id": format!("scope-{}", s.name), "name": s.name, "displayName": s.display_name, "description": s.description})
}

fn parse_scope(v: &Value) -> Result<Scope, String> {
    let o = v.as_object().ok_or("a scope must be an object")?;
    for k in o.keys() {
        if !matches!(k.as_str(), "name" | "displayName" | "description") {
            return Err(format!("unknown scope field {k:?}"));
        }
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("scope name is required")?;
    if name.to_ascii_lowercase().starts_with("internal") {
        return Err(format!("scope name {name:?} is reserved"));
    }
    Ok(Scope {
        name: name.to_string(),
        display_name: o
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_string(),
        description: o
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

impl Management {
    /// Make the next `n` management calls answer 429 with `Retry-After: 1`.
    pub fn fail_next_with_429(&self, n: u64) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Write calls (not GET, not role search) so far.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET ") && !c.ends_with("/.search"))
            .collect()
    }

    /// Add a role directly (as an Asgardeo admin would).
    pub fn add_role(&self, name: &str, permissions: &[&str]) {
        let id = format!("role-{}", self.seq.fetch_add(1, Ordering::SeqCst));
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Role {
                id,
                name: name.to_string(),
                permissions: permissions.iter().map(|s| s.to_string()).collect(),
            });
    }

    /// Add an API resource directly (as an Asgardeo admin would); returns its id.
    pub fn add_resource(&self, name: &str, scopes: &[(&str, &str)]) -> String {
        let scopes = scopes
            .iter()
            .map(|(n, d)| Scope {
                name: n.to_string(),
                display_name: n.to_string(),
                description: d.to_string(),
            })
            .collect();
        self.insert_resource(name, &format!("/{name}"), scopes)
    }

    /// Store a new API resource; its id.
    fn insert_resource(&self, name: &str, identifier: &str, scopes: Vec<Scope>) -> String {
        let id = format!("res-{}", self.seq.fetch_add(1, Ordering::SeqCst));
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Resource {
                id: id.clone(),
                name: name.to_string(),
                identifier: identifier.to_string(),
                scopes,
            });
        id
    }

    /// Scopes of the resource named `name`.
    pub fn scopes_of(&self, name: &str) -> Vec<Scope> {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.scopes.clone())
            .unwrap_or_default()
    }

    /// Permissions of the role named `name`, sorted.
    pub fn role(&self, name: &str) -> Option<Vec<String>> {
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.name == name)
            .map(|r| {
                let mut p = r.permissions.clone();
                p.sort();
                p
            })
    }

    /// Handle `rest` (the path after `/t/<org>`); `granted` are the caller token's scopes.
    pub async fn handle(
        &self,
        rest: &str,
        granted: Option<Vec<String>>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Response<loopback::Body> {
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{method} {}{rest}", "/t/-"));
        if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            return Response::builder()
                .status(429)
                .header(http::header::RETRY_AFTER, "1")
                .body(loopback::full("rate limited"))
                .unwrap_or_default();
        }
        let Some(granted) = granted else {
            return err(401, "a management access token is required");
        };
        let needed = match (rest.starts_with("/scim2/"), method.as_str()) {
            (false, "GET") => "internal_api_resource_view",
            (false, "POST") => "internal_api_resource_create",
            (false, "PATCH" | "PUT") => "internal_api_resource_update",
            (false, _) => "internal_api_resource_delete",
            (true, "GET") => "internal_role_mgt_view",
            (true, "POST") if rest.ends_with("/.search") => "internal_role_mgt_view",
            (true, "POST") => "internal_role_mgt_create",
            (true, "PATCH" | "PUT") => "internal_role_mgt_update",
            (true, _) => "internal_role_mgt_delete",
        };
        if !granted.iter().any(|g| g == needed) {
            return err(403, &format!("the token lacks {needed}"));
        }
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return err(400, "unreadable body"),
        };
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => return err(400, "body is not JSON"),
            }
        };
        let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
        match (method.as_str(), segs.as_slice()) {
            ("GET", ["api", "server", "v1", "api-resources"]) => {
                let want = query.strip_prefix("filter=name+eq+").map(|n| {
                    url::form_urlencoded::parse(format!("n={n}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                });
                let list: Vec<Value> = self
                    .resources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|r| want.as_deref().is_none_or(|w| r.name == w))
                    .map(|r| json!({"id": r.id, "name": r.name, "identifier": r.identifier}))
                    .collect();
                loopback::json(
                    200,
                    &json!({"totalResults": list.len(), "apiResources": list}),
                )
            }
            ("POST", ["api", "server", "v1", "api-resources"]) => {
                let (Some(name), Some(identifier)) =
                    (body["name"].as_str(), body["identifier"].as_str())
                else {
                    return err(400, "name and identifier are required");
                };
                if !body["requiresAuthorization"].is_boolean() {
                    return err(400, "requiresAuthorization must be a boolean");
                }
                let scopes: Result<Vec<Scope>, String> = body["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(parse_scope)
                    .collect();
                let scopes = match scopes {
                    Ok(s) => s,
                    Err(e) => return err(400, &e),
                };
                let id = self.insert_resource(name, identifier, scopes);
                loopback::json(
                    201,
                    &json!({"id": id, "name": name, "identifier": identifier}),
                )
            }
            ("PATCH", ["api", "server", "v1", "api-resources", id]) => {
                let Some(obj) = body.as_object() else {
                    return err(400, "body must be an object");
                };
                if let Some(k) = obj
                    .keys()
                    .find(|k| !matches!(k.as_str(), "name" | "description" | "addedScopes"))
                {
                    return err(400, &format!("{k:?} is not supported in PATCH"));
                }
                let added: Result<Vec<Scope>, String> = obj
                    .get("addedScopes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(parse_scope)
                    .collect();
                let added = match added {
                    Ok(a) => a,
                    Err(e) => return err(400, &e),
                };
                let mut resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
                let Some(r) = resources.iter_mut().find(|r| r.id == *id) else {
                    return err(404, "no such resource");
                };
                if let Some(dup) = added
                    .iter()
                    .find(|a| r.scopes.iter().any(|s| s.name == a.name))
                {
                    return err(409, &format!("scope {} already exists", dup.name));
                }
                r.scopes.extend(added);
                Response::builder()
                    .status(204)
                    .body(loopback::full(""))
                    .unwrap_or_default()
            }
            ("GET", ["api", "server", "v1", "api-resources", id, "scopes"]) => {
                let resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
                match resources.iter().find(|r| r.id == *id) {
                    Some(r) => loopback::json(
                        200,
                        &Value::Array(r.scopes.iter().map(scope_json).collect()),
                    ),
                    None => err(404, "no such resource"),
                }
            }
            (
                m @ ("PATCH" | "DELETE"),
                ["api", "server", "v1", "api-resources", id, "scopes", name],
            ) => {
                let name = url::form_urlencoded::parse(format!("n={name}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let mut resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
                let Some(r) = resources.iter_mut().find(|r| r.id == *id) else {
                    return err(404, "no such resource");
                };
                let Some(pos) = r.scopes.iter().position(|s| s.name == name) else {
                    return err(404, "no such scope");
                };
                if m == "DELETE" {
                    r.scopes.remove(pos);
                } else {
                    let Some(o) = body.as_object() else {
                        return err(400, "body must be an object");
                    };
                    if o.keys()
                        .any(|k| !matches!(k.as_str(), "displayName" | "description"))
                    {
                        return err(400, "only displayName and description can change");
                    }
                    if let Some(d) = o.get("displayName").and_then(Value::as_str) {
                        r.scopes[pos].display_name = d.into();
                    }
                    if let Some(d) = o.get("description").and_then(Value::as_str) {
                        r.scopes[pos].description = d.into();
                    }
                }
                Response::builder()
                    .status(204)
                    .body(loopback::full(""))
                    .unwrap_or_default()
            }
            ("POST", ["scim2", "v2", "Roles", ".search"]) => {
                if body["schemas"] != json!(["urn:ietf:params:scim:api:messages:2.0:SearchRequest"])
                {
                    return err(400, "schemas must name the SCIM SearchRequest");
                }
                let filter = body["filter"].as_str().map(|f| {
                    f.strip_prefix("displayName eq ")
                        .unwrap_or("\u{0}")
                        .to_string()
                });
                let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
                let list: Vec<Value> = roles
                    .iter()
                    .filter(|r| filter.as_deref().is_none_or(|f| r.name == f))
                    .map(|r| json!({"id": r.id, "displayName": r.name, "permissions": r.permissions.iter().map(|p| json!({"value": p, "display": p})).collect::<Vec<_>>()}))
                    .collect();
                loopback::json(
                    200,
                    &json!({"totalResults": list.len(), "Resources": list, "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}),
                )
            }
            ("POST", ["scim2", "v2", "Roles"]) => {
                let Some(name) = body["displayName"].as_str() else {
                    return err(400, "displayName is required");
                };
                let perms: Option<Vec<String>> = body["permissions"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|p| p["value"].as_str().map(str::to_string))
                        .collect()
                });
                let Some(perms) = perms else {
                    return err(400, "permissions must be an array of {value, display}");
                };
                let mut roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
                if roles.iter().any(|r| r.name == name) {
                    return err(409, "role exists");
                }
                let id = format!("role-{}", self.seq.fetch_add(1, Ordering::SeqCst));
                roles.push(Role {
                    id: id.clone(),
                    name: name.into(),
                    permissions: perms,
                });
                loopback::json(201, &json!({"id": id, "displayName": name}))
            }
            ("GET", ["scim2", "v2", "Roles", id]) => {
                let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
                match roles.iter().find(|r| r.id == *id) {
                    Some(r) => loopback::json(
                        200,
                        &json!({"id": r.id, "displayName": r.name, "permissions": r.permissions.iter().map(|p| json!({"value": p, "display": p})).collect::<Vec<_>>()}),
                    ),
                    None => err(404, "no such role"),
                }
            }
            ("PATCH", ["scim2", "v2", "Roles", id]) => {
                let ops = body["Operations"].as_array();
                let Some([op]) = ops.map(|o| o.as_slice()) else {
                    return err(400, "exactly one operation expected");
                };
                if op["op"] != "replace" || !op["value"]["permissions"].is_array() {
                    return err(400, "expected {op: replace, value: {permissions: [...]}}");
                }
                let perms: Vec<String> = op["value"]["permissions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["value"].as_str().map(str::to_string))
                    .collect();
                let mut roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
                match roles.iter_mut().find(|r| r.id == *id) {
                    Some(r) => {
                        r.permissions = perms;
                        loopback::json(200, &json!({"id": r.id, "displayName": r.name}))
                    }
                    None => err(404, "no such role"),
                }
            }
            _ => err(404, "not found"),
        }
    }
}
