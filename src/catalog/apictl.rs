//! WSO2 imports: apictl API projects (`api.yaml` + `Definitions/swagger.yaml`) and OpenAPI files
//! with WSO2's `x-wso2-*` extensions, read with the meaning the WSO2 gateway gives them
//! (reference §7).
//!
//! `api.yaml` is the primary source: context, version, default version, production endpoint,
//! key managers, authorization header, scopes with role bindings, operations. When it lists no
//! operations, the swagger (OAS2 or OAS3) supplies them: per-operation `security` entries of
//! WSO2's `default` scheme give the scopes, `x-auth-type` the auth type, and
//! `x-scopes-bindings` the roles. A plain OpenAPI file is an API on its own when it carries
//! `x-wso2-basePath` and `x-wso2-production-endpoints`. Sandbox endpoints are read and kept for
//! later, so an unusable one is not an error.

use super::native::{check_template, normalise_context, parse_auth_type, parse_verb};
use super::{
    parse_upstream, ApiDef, AuthType, KeyManagerSelector, ResourceDef, ScopeDef, Timeouts,
};
use crate::config::{read_substituted, yaml_error, Issues};
use serde_json::Value;
use std::path::Path;

const VERBS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// A YAML scalar as a string (apictl writes `version: 1.0` as a number sometimes).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn parse_yaml(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<Value> {
    let t = read_substituted(path, lookup, issues)?;
    match serde_saphyr::from_str::<Value>(&t) {
        Ok(v) => Some(v),
        Err(e) => {
            issues.push(path, "(yaml)", yaml_error(&e));
            None
        }
    }
}

/// Is `dir` an apictl API project? Its `api.yaml` (or `Meta-information/api.yaml`) has the
/// export's top-level `data:` mapping; a native definition that happens to be named `api.yaml`
/// does not.
pub fn is_project(dir: &Path) -> bool {
    ["api.yaml", "Meta-information/api.yaml"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f))
            .is_ok_and(|t| t.lines().any(|l| l.trim_end() == "data:"))
    })
}

/// Does this YAML/JSON document look like an OpenAPI definition with WSO2 extensions?
pub fn is_wso2_openapi(doc: &Value) -> bool {
    (doc.get("openapi").is_some() || doc.get("swagger").is_some())
        && doc.get("x-wso2-basePath").is_some()
}

/// The first usable URL of an endpoint entry (`{url: ..}`, `[{url: ..}]`, or a string).
fn endpoint_url(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("url").and_then(text),
        Value::Array(a) => a.iter().find_map(endpoint_url),
        _ => None,
    }
}

fn upstream(
    url: &str,
    path: &Path,
    field: &str,
    issues: &mut Issues,
) -> Option<super::UpstreamTarget> {
    if !url.contains("://") {
        issues.push(
            path,
            field,
            format!("endpoint {url:?} has no scheme; write http:// or https://"),
        );
        return None;
    }
    parse_upstream(url)
        .map_err(|e| issues.push(path, field, e))
        .ok()
}

/// Scopes declared by a swagger document, with `x-scopes-bindings` roles.
fn swagger_scopes(doc: &Value) -> Vec<ScopeDef> {
    let scheme = doc
        .pointer("/securityDefinitions/default")
        .or_else(|| doc.pointer("/components/securitySchemes/default/flows/implicit"))
        .or_else(|| doc.pointer("/components/securitySchemes/default/flows/clientCredentials"));
    let Some(scheme) = scheme else {
        return Vec::new();
    };
    let bindings = scheme.get("x-scopes-bindings").and_then(Value::as_object);
    scheme
        .get("scopes")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(name, desc)| ScopeDef {
                    name: name.clone(),
                    display_name: name.clone(),
                    description: text(desc).unwrap_or_default(),
                    roles: bindings
                        .and_then(|b| b.get(name))
                        .and_then(Value::as_str)
                        .map(|r| {
                            r.split(',')
                                .map(|x| x.trim().to_string())
                                .filter(|x| !x.is_empty())
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Operations of a swagger document as resources.
fn swagger_resources(doc: &Value, path: &Path, issues: &mut Issues) -> Vec<ResourceDef> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (target, item) in paths {
        for verb in VERBS {
            let Some(op) = item.get(verb) else { continue };
            let field = format!("paths.{target}.{verb}");
            if let Err(e) = check_template(target) {
                issues.push(path, &field, e);
                continue;
            }
            // WSO2 puts the API's scopes under its own `default` scheme; other schemes are the
            // original definition's and are not what the gateway enforces.
            let scopes: Vec<String> = op
                .get("security")
                .or_else(|| doc.get("security"))
                .and_then(Value::as_array)
                .map(|reqs| {
                    reqs.iter()
                        .filter_map(|r| r.get("default").and_then(Value::as_array))
                        .flatten()
                        .filter_map(text)
                        .collect()
                })
                .unwrap_or_default();
            let auth = match op.get("x-auth-type").and_then(text) {
                Some(a) => match parse_auth_type(&a) {
                    Ok(a) => a,
                    Err(e) => {
                        issues.push(path, format!("{field}.x-auth-type"), e);
                        continue;
                    }
                },
                None => AuthType::Any,
            };
            out.push(ResourceDef {
                verb: parse_verb(verb).expect("known verb"),
                target: target.clone(),
                scopes,
                auth,
            });
        }
    }
    out
}

/// Split `x-wso2-basePath` (`/v2/1.0.5`) into context and version when it ends with the version.
fn split_base_path(base: &str, version: &str) -> String {
    let base = normalise_context(base);
    match base.strip_suffix(&format!("/{version}")) {
        Some(ctx) if !ctx.is_empty() => ctx.to_string(),
        _ => base,
    }
}

/// Load an apictl project folder.
pub fn load_project(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<ApiDef> {
    let api_yaml = if dir.join("api.yaml").is_file() {
        dir.join("api.yaml")
    } else {
        dir.join("Meta-information/api.yaml")
    };
    let doc = parse_yaml(&api_yaml, lookup, issues)?;
    let before = issues.0.len();
    if doc
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "api")
    {
        issues.push(
            &api_yaml,
            "type",
            "only `type: api` projects are supported (not API products or MCP servers)",
        );
        return None;
    }
    let data = doc.get("data").cloned().unwrap_or(Value::Null);
    let field = |f: &str| format!("data.{f}");
    let name = issues.required(
        data.get("name").and_then(text),
        &api_yaml,
        field("name"),
        "is required",
    );
    let version = issues.required(
        data.get("version").and_then(text),
        &api_yaml,
        field("version"),
        "is required",
    );
    let context = issues.required(
        data.get("context")
            .and_then(text)
            .map(|c| normalise_context(&c)),
        &api_yaml,
        field("context"),
        "is required",
    );
    let default_version = data
        .get("isDefaultVersion")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let swagger_path = [
        "Definitions/swagger.yaml",
        "Definitions/swagger.json",
        "Definitions/openapi.yaml",
    ]
    .iter()
    .map(|p| dir.join(p))
    .find(|p| p.is_file());
    let swagger = swagger_path
        .as_ref()
        .and_then(|p| parse_yaml(p, lookup, issues));

    let prod = data
        .pointer("/endpointConfig/production_endpoints")
        .and_then(endpoint_url)
        .or_else(|| {
            swagger
                .as_ref()
                .and_then(|s| s.pointer("/x-wso2-production-endpoints/urls"))
                .and_then(endpoint_url)
        });
    let upstream = match prod {
        Some(u) => upstream(
            &u,
            &api_yaml,
            "data.endpointConfig.production_endpoints.url",
            issues,
        ),
        None => {
            issues.push(
                &api_yaml,
                "data.endpointConfig.production_endpoints",
                "a production endpoint is required",
            );
            None
        }
    };
    if let Some(sandbox) = data
        .pointer("/endpointConfig/sandbox_endpoints")
        .and_then(endpoint_url)
    {
        if !sandbox.contains("://") || parse_upstream(&sandbox).is_err() {
            log::warn!("{}: sandbox endpoint {sandbox:?} is not usable; kept for later (sandbox is not served yet)", api_yaml.display());
        }
    }
    let key_managers = match data.get("keyManagers").and_then(Value::as_array) {
        Some(list) if list.iter().any(|v| v.as_str() == Some("all")) || list.is_empty() => {
            KeyManagerSelector::All
        }
        Some(list) => KeyManagerSelector::Named(list.iter().filter_map(text).collect()),
        None => KeyManagerSelector::All,
    };
    let header = data
        .get("authorizationHeader")
        .and_then(text)
        .or_else(|| {
            swagger
                .as_ref()
                .and_then(|s| s.get("x-wso2-auth-header"))
                .and_then(text)
        })
        .unwrap_or_else(|| "Authorization".to_string());
    let authorization_header =
        http::HeaderName::from_bytes(header.as_bytes()).unwrap_or_else(|_| {
            issues.push(
                &api_yaml,
                field("authorizationHeader"),
                format!("{header:?} is not a header name"),
            );
            http::header::AUTHORIZATION
        });
    let mut scopes: Vec<ScopeDef> = data
        .get("scopes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| s.get("scope"))
                .filter_map(|s| {
                    let name = s.get("name").and_then(text)?;
                    Some(ScopeDef {
                        display_name: s
                            .get("displayName")
                            .and_then(text)
                            .unwrap_or_else(|| name.clone()),
                        description: s.get("description").and_then(text).unwrap_or_default(),
                        roles: s
                            .get("bindings")
                            .and_then(Value::as_array)
                            .map(|b| b.iter().filter_map(text).collect())
                            .unwrap_or_default(),
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut resources = Vec::new();
    let operations = data
        .get("operations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, op) in operations.iter().enumerate() {
        let at = format!("data.operations[{i}]");
        let (Some(target), Some(verb)) = (
            op.get("target").and_then(text),
            op.get("verb").and_then(text),
        ) else {
            issues.push(&api_yaml, &at, "target and verb are required");
            continue;
        };
        let Some(verb) = parse_verb(&verb) else {
            issues.push(
                &api_yaml,
                format!("{at}.verb"),
                format!("{verb:?} is not an HTTP verb WSO2 resources use"),
            );
            continue;
        };
        if let Err(e) = check_template(&target) {
            issues.push(&api_yaml, format!("{at}.target"), e);
            continue;
        }
        let auth = match op
            .get("authType")
            .and_then(text)
            .map(|a| parse_auth_type(&a))
            .transpose()
        {
            Ok(a) => a.unwrap_or(AuthType::Any),
            Err(e) => {
                issues.push(&api_yaml, format!("{at}.authType"), e);
                continue;
            }
        };
        let op_scopes = op
            .get("scopes")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(text).collect())
            .unwrap_or_default();
        resources.push(ResourceDef {
            verb,
            target,
            scopes: op_scopes,
            auth,
        });
    }
    if resources.is_empty() {
        if let (Some(s), Some(p)) = (&swagger, &swagger_path) {
            resources = swagger_resources(s, p, issues);
        }
    }
    if scopes.is_empty() {
        if let Some(s) = &swagger {
            scopes = swagger_scopes(s);
        }
    }
    if resources.is_empty() && issues.0.len() == before {
        issues.push(
            &api_yaml,
            "data.operations",
            "no operations in api.yaml nor in Definitions/swagger.yaml",
        );
    }
    if issues.0.len() != before {
        return None;
    }
    Some(ApiDef {
        name,
        context,
        version,
        default_version,
        upstream: upstream?,
        timeouts: Timeouts::default(),
        key_managers,
        authorization_header,
        forward_authorization: false,
        scopes,
        resources,
        source: api_yaml,
    })
}

/// Load a plain OpenAPI (2 or 3) file with `x-wso2-basePath` and `x-wso2-production-endpoints`.
pub fn load_openapi(path: &Path, doc: &Value, issues: &mut Issues) -> Option<ApiDef> {
    let before = issues.0.len();
    let name = issues.required(
        doc.pointer("/info/title").and_then(text),
        path,
        "info.title",
        "is required (it names the API)",
    );
    let version = issues.required(
        doc.pointer("/info/version").and_then(text),
        path,
        "info.version",
        "is required",
    );
    let base = doc
        .get("x-wso2-basePath")
        .and_then(text)
        .unwrap_or_default();
    let context = split_base_path(&base, &version);
    let upstream = match doc
        .pointer("/x-wso2-production-endpoints/urls")
        .and_then(endpoint_url)
    {
        Some(u) => upstream(&u, path, "x-wso2-production-endpoints.urls[0]", issues),
        None => {
            issues.push(
                path,
                "x-wso2-production-endpoints",
                "a production endpoint is required",
            );
            None
        }
    };
    let header = doc
        .get("x-wso2-auth-header")
        .and_then(text)
        .unwrap_or_else(|| "Authorization".into());
    let resources = swagger_resources(doc, path, issues);
    if resources.is_empty() && issues.0.len() == before {
        issues.push(path, "paths", "no operations");
    }
    if issues.0.len() != before {
        return None;
    }
    Some(ApiDef {
        name,
        context,
        version,
        default_version: doc
            .get("x-wso2-default-version")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        upstream: upstream?,
        timeouts: Timeouts::default(),
        key_managers: KeyManagerSelector::All,
        authorization_header: http::HeaderName::from_bytes(header.as_bytes())
            .unwrap_or(http::header::AUTHORIZATION),
        forward_authorization: false,
        scopes: swagger_scopes(doc),
        resources,
        source: path.to_path_buf(),
    })
}

/// Parse a YAML/JSON file as a generic document (to tell native definitions from OpenAPI).
pub fn read_document(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<Value> {
    parse_yaml(path, lookup, issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_split_on_the_version() {
        assert_eq!(split_base_path("/v2/1.0.5", "1.0.5"), "/v2");
        assert_eq!(split_base_path("/orders", "v1"), "/orders");
        assert_eq!(
            split_base_path("/{version}/orders", "v1"),
            "/{version}/orders"
        );
    }

    #[test]
    fn scheme_less_endpoints_are_refused_with_a_hint() {
        let mut issues = Issues::default();
        assert!(upstream(
            "petstore.swagger.io",
            Path::new("api.yaml"),
            "f",
            &mut issues
        )
        .is_none());
        assert!(issues.0[0].message.contains("has no scheme"));
    }
}
