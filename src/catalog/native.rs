//! keygate's native API definition format: one YAML file per API (DESIGN.md).

use super::{
    parse_upstream, ApiDef, AuthType, KeyManagerSelector, ResourceDef, ScopeDef, Timeouts,
};
use crate::config::file::HumanDuration;
use crate::config::{read_substituted, Issues};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    name: Option<String>,
    context: Option<String>,
    version: Option<String>,
    #[serde(default)]
    default_version: bool,
    upstream: Option<String>,
    timeouts: Option<TimeoutsFile>,
    key_managers: Option<Vec<String>>,
    authorization_header: Option<String>,
    #[serde(default)]
    forward_authorization: bool,
    #[serde(default)]
    scopes: Vec<ScopeFile>,
    #[serde(default)]
    resources: Vec<ResourceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    connect: Option<HumanDuration>,
    read: Option<HumanDuration>,
    write: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    name: String,
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceFile {
    verb: String,
    target: String,
    #[serde(default)]
    scopes: Vec<String>,
    auth_type: Option<String>,
}

/// Parse a WSO2 auth type string (api.yaml `authType`, swagger `x-auth-type`).
pub fn parse_auth_type(s: &str) -> Result<AuthType, String> {
    match s.trim() {
        "None" | "none" | "NONE" => Ok(AuthType::None),
        "Any" | "Application & Application User" | "Application_&_Application_User" => Ok(AuthType::Any),
        "Application" => Ok(AuthType::Application),
        "Application User" | "Application_User" => Ok(AuthType::ApplicationUser),
        other => Err(format!(
            "{other:?} is not one of None, Application, Application User, Application & Application User"
        )),
    }
}

/// Validate a URL template: starts with `/`, `{name}` segments, `*` only as the last segment.
pub fn check_template(t: &str) -> Result<(), String> {
    if !t.starts_with('/') {
        return Err(format!("{t:?} must start with /"));
    }
    let segs: Vec<&str> = t.trim_end_matches('/').split('/').skip(1).collect();
    for (i, s) in segs.iter().enumerate() {
        if s.contains('*') && (*s != "*" || i + 1 != segs.len()) {
            return Err(format!("{t:?}: * may only be the whole last segment (/*)"));
        }
        if s.starts_with('{') != s.ends_with('}') || s.contains('?') {
            return Err(format!(
                "{t:?}: segment {s:?} is not a literal, {{name}} or *"
            ));
        }
        if s.starts_with('{') && s.len() < 3 {
            return Err(format!("{t:?}: empty parameter name"));
        }
    }
    Ok(())
}

/// The verbs WSO2 resources use.
pub fn parse_verb(v: &str) -> Option<http::Method> {
    match v.trim().to_ascii_uppercase().as_str() {
        "GET" => Some(http::Method::GET),
        "POST" => Some(http::Method::POST),
        "PUT" => Some(http::Method::PUT),
        "DELETE" => Some(http::Method::DELETE),
        "PATCH" => Some(http::Method::PATCH),
        "HEAD" => Some(http::Method::HEAD),
        "OPTIONS" => Some(http::Method::OPTIONS),
        _ => None,
    }
}

/// Normalise a context: leading `/`, no trailing `/`.
pub fn normalise_context(c: &str) -> String {
    let c = c.trim().trim_end_matches('/');
    if c.starts_with('/') {
        c.to_string()
    } else {
        format!("/{c}")
    }
}

/// Load one native API file; issues are recorded, `None` when it is unusable.
pub fn load_file(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<ApiDef> {
    let text = read_substituted(path, lookup, issues)?;
    let f: ApiFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            issues.push(path, "(yaml)", crate::config::yaml_error(&e));
            return None;
        }
    };
    let before = issues.0.len();
    let required = |v: &Option<String>, field: &str, issues: &mut Issues| match v {
        Some(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            issues.push(path, field, "is required");
            String::new()
        }
    };
    let name = required(&f.name, "name", issues);
    let context = normalise_context(&required(&f.context, "context", issues));
    if context.contains('{') || context.contains('*') {
        issues.push(
            path,
            "context",
            "templates in a native context are not supported",
        );
    }
    let version = required(&f.version, "version", issues);
    if version.contains('/') {
        issues.push(path, "version", "must not contain /");
    }
    let upstream_s = required(&f.upstream, "upstream", issues);
    let upstream = if upstream_s.is_empty() {
        None
    } else {
        parse_upstream(&upstream_s)
            .map_err(|e| issues.push(path, "upstream", e))
            .ok()
    };
    let mut timeouts = Timeouts::default();
    if let Some(t) = &f.timeouts {
        timeouts.connect = t.connect.map(|d| d.0).unwrap_or(timeouts.connect);
        timeouts.read = t.read.map(|d| d.0).unwrap_or(timeouts.read);
        timeouts.write = t.write.map(|d| d.0).unwrap_or(timeouts.write);
    }
    let key_managers = match &f.key_managers {
        None => KeyManagerSelector::All,
        Some(v) if v.iter().any(|n| n == "all") => KeyManagerSelector::All,
        Some(v) if v.is_empty() => {
            issues.push(
                path,
                "key_managers",
                "must name at least one key manager, or all",
            );
            KeyManagerSelector::All
        }
        Some(v) => KeyManagerSelector::Named(v.clone()),
    };
    let authorization_header = match http::HeaderName::from_bytes(
        f.authorization_header
            .as_deref()
            .unwrap_or("Authorization")
            .as_bytes(),
    ) {
        Ok(h) => h,
        Err(_) => {
            issues.push(path, "authorization_header", "is not a valid header name");
            http::header::AUTHORIZATION
        }
    };
    let scopes: Vec<ScopeDef> = f
        .scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
                issues.push(
                    path,
                    format!("scopes[{i}].name"),
                    "must be non-empty without spaces",
                );
            }
            ScopeDef {
                name: s.name.clone(),
                display_name: s.display_name.clone().unwrap_or_else(|| s.name.clone()),
                description: s.description.clone().unwrap_or_default(),
                roles: s.roles.clone(),
            }
        })
        .collect();
    let mut resources = Vec::with_capacity(f.resources.len());
    for (i, r) in f.resources.iter().enumerate() {
        let verb = parse_verb(&r.verb);
        if verb.is_none() {
            issues.push(
                path,
                format!("resources[{i}].verb"),
                format!(
                    "{:?} is not one of GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS",
                    r.verb
                ),
            );
        }
        if let Err(e) = check_template(&r.target) {
            issues.push(path, format!("resources[{i}].target"), e);
        }
        let Some(verb) = verb else { continue };
        let auth = match r.auth_type.as_deref().map(parse_auth_type).transpose() {
            Ok(a) => a.unwrap_or(AuthType::Any),
            Err(e) => {
                issues.push(path, format!("resources[{i}].auth_type"), e);
                AuthType::Any
            }
        };
        for (j, s) in r.scopes.iter().enumerate() {
            if !scopes.is_empty() && !scopes.iter().any(|d| &d.name == s) {
                issues.push(
                    path,
                    format!("resources[{i}].scopes[{j}]"),
                    format!("{s:?} is not declared under scopes"),
                );
            }
        }
        for (k, other) in resources.iter().enumerate() {
            let other: &ResourceDef = other;
            if other.verb == verb
                && other.target.trim_end_matches('/') == r.target.trim_end_matches('/')
            {
                issues.push(
                    path,
                    format!("resources[{i}]"),
                    format!("{verb} {} repeats resources[{k}]", r.target),
                );
            }
        }
        resources.push(ResourceDef {
            verb,
            target: r.target.clone(),
            scopes: r.scopes.clone(),
            auth,
        });
    }
    if resources.is_empty() && issues.0.len() == before {
        issues.push(path, "resources", "an API needs at least one resource");
    }
    if issues.0.len() != before {
        return None;
    }
    Some(ApiDef {
        name,
        context,
        version,
        default_version: f.default_version,
        upstream: upstream?,
        timeouts,
        key_managers,
        authorization_header,
        forward_authorization: f.forward_authorization,
        scopes,
        resources,
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("/").is_ok());
        assert!(check_template("/{id}/items/*").is_ok());
        assert!(check_template("/*/x").is_err());
        assert!(check_template("x").is_err());
        assert!(check_template("/{}").is_err());
        assert!(check_template("/*.json").is_err());
        assert!(check_template("/a*").is_err());
    }

    #[test]
    fn auth_types() {
        assert_eq!(parse_auth_type("None").unwrap(), AuthType::None);
        assert_eq!(
            parse_auth_type("Application & Application User").unwrap(),
            AuthType::Any
        );
        assert_eq!(
            parse_auth_type("Application").unwrap(),
            AuthType::Application
        );
        assert_eq!(
            parse_auth_type("Application User").unwrap(),
            AuthType::ApplicationUser
        );
        assert!(parse_auth_type("Admin").is_err());
    }
}
