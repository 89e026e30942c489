//! Authorization: the resource's scopes against the principal's, any-of, on every request.
//!
//! A [`Permit`] is the only way to reach the upstream phases, and only this module can make one,
//! so "nothing reaches the upstream unauthorized" is checked by the compiler (linkerd's
//! `HttpRoutePermit`). Scopes are never cached with the token verdict: the same token may be
//! valid for one resource and not for another.

use crate::auth::{Principal, TokenKind};
use crate::catalog::route::RouteMatch;
use crate::catalog::{AuthType, ResourceDef};
use crate::error::ScopeError;
use std::sync::Arc;

/// Proof that a request may go upstream.
#[derive(Debug, Clone)]
pub struct Permit {
    route: RouteMatch,
    principal: Option<Arc<Principal>>,
}

impl Permit {
    /// The matched route.
    pub fn route(&self) -> &RouteMatch {
        &self.route
    }

    /// The authenticated caller; `None` for an `auth_type: None` resource.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }
}

/// A permit without credentials, for resources whose auth type is `None`.
pub fn allow_anonymous(route: RouteMatch, resource: &ResourceDef) -> Option<Permit> {
    (resource.auth == AuthType::None).then_some(Permit {
        route,
        principal: None,
    })
}

/// The scope check (WSO2 semantics: a resource without scopes admits any valid token; otherwise
/// one of its scopes suffices; comparison is case-sensitive).
pub fn check(
    route: RouteMatch,
    resource: &ResourceDef,
    principal: Arc<Principal>,
) -> Result<Permit, ScopeError> {
    // A resource restricted to one token kind refuses the other, and a token whose kind the key
    // manager did not say (fail closed).
    let kind_ok = match resource.auth {
        AuthType::Application => principal.token_kind == Some(TokenKind::Application),
        AuthType::ApplicationUser => principal.token_kind == Some(TokenKind::ApplicationUser),
        AuthType::Any | AuthType::None => true,
    };
    if !kind_ok {
        return Err(ScopeError::IncorrectTokenType {
            template: resource.target.clone(),
        });
    }
    if resource.scopes.is_empty() || principal.has_any_scope(&resource.scopes) {
        Ok(Permit {
            route,
            principal: Some(principal),
        })
    } else {
        Err(ScopeError::InsufficientScope {
            template: resource.target.clone(),
            required: resource.scopes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    fn principal(scopes: &[&str]) -> Arc<Principal> {
        Arc::new(Principal::new(0, Identity::default(), scopes, None, None).unwrap())
    }

    fn resource(scopes: &[&str], auth: AuthType) -> ResourceDef {
        ResourceDef {
            verb: http::Method::GET,
            target: "/{id}".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            auth,
        }
    }

    const ROUTE: RouteMatch = RouteMatch {
        api: 0,
        resource: 0,
        base_len: 0,
    };

    #[test]
    fn any_of_semantics() {
        let r = resource(&["read", "admin"], AuthType::Any);
        assert!(check(ROUTE, &r, principal(&["admin"])).is_ok());
        assert!(check(ROUTE, &r, principal(&["write", "read"])).is_ok());
        assert!(check(ROUTE, &r, principal(&["Read"])).is_err());
        assert!(check(ROUTE, &r, principal(&[])).is_err());
        assert!(check(ROUTE, &resource(&[], AuthType::Any), principal(&[])).is_ok());
    }

    #[test]
    fn anonymous_only_for_auth_none() {
        assert!(allow_anonymous(ROUTE, &resource(&[], AuthType::None)).is_some());
        assert!(allow_anonymous(ROUTE, &resource(&[], AuthType::Any)).is_none());
    }
}
