//! Every reason a request is refused, and the one place where those reasons become HTTP.
//!
//! Each subsystem has its own error enum (`RouteError` from the catalog, `AuthError` from token
//! validation, `ScopeError` from authorization). They meet here as [`Rejection`], which knows the
//! status, the WSO2 4.x fault body (`{"code","message","description"}`, code as a string) and the
//! RFC 6750 `WWW-Authenticate` challenge. Nothing else in the crate chooses a status code for a
//! refusal, so the contract in DESIGN.md is enforced in one file.

use bytes::Bytes;
use serde::Serialize;

/// Why routing refused a request.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No API context matches the path.
    #[error("no API matches the request path")]
    NoApi,
    /// The API exists but none of its resources matches the verb and path (WSO2 900906).
    #[error("no resource of API {context} {version} matches the request")]
    NoResource {
        /// The API context, e.g. `/orders`.
        context: String,
        /// The API version, e.g. `v1`.
        version: String,
    },
    /// The path is not something we will route: dot segments, encoded slashes, backslashes.
    #[error("request path rejected: {0}")]
    BadPath(&'static str),
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No usable `Bearer` credential in the API's authorization header (WSO2 900902).
    #[error("missing credentials")]
    MissingCredentials {
        /// The header the API reads credentials from, for the fault description.
        header: String,
    },
    /// The token was refused (WSO2 900901). The reason is logged and counted, and a coarse
    /// description goes to the client.
    #[error("invalid token: {0}")]
    InvalidToken(InvalidReason),
    /// The key manager that must judge this token cannot be reached or has no keys yet (900900).
    /// Never a 401: it is not the caller's fault.
    #[error("key manager {key_manager} unavailable: {detail}")]
    KeyManagerUnavailable {
        /// The key manager's configured name (for logs and metrics, not for the client).
        key_manager: String,
        /// What went wrong, for logs.
        detail: String,
    },
}

/// The distinct ways a token can be invalid. Kept small and static so it can label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// Larger than the 16 KiB limit; refused before any parsing.
    TooLarge,
    /// Contains dots but is not three base64url segments with a decodable header.
    MalformedJwt,
    /// An opaque token and no key manager that could introspect it.
    Opaque,
    /// The key manager's introspection says the token is not active (or it expired, or its
    /// audience does not match).
    Inactive,
    /// `iss` names no configured key manager.
    UnknownIssuer,
    /// The issuer's key manager is not allowed for this API.
    KeyManagerNotAllowed,
    /// `alg` is `none`, HMAC, unsupported, or not the algorithm the key is pinned to.
    AlgorithmNotAllowed,
    /// No key with this `kid`, even after a refresh.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// `exp` is missing and the key manager requires it.
    MissingExp,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `aud` matches none of the configured audiences.
    BadAudience,
    /// `iss` in the verified claims does not match.
    BadIssuer,
    /// A claim we forward upstream cannot be carried in an HTTP header.
    BadClaims,
}

impl InvalidReason {
    /// A short stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::MalformedJwt => "malformed_jwt",
            Self::Opaque => "no_introspecting_key_manager",
            Self::Inactive => "inactive",
            Self::UnknownIssuer => "unknown_issuer",
            Self::KeyManagerNotAllowed => "key_manager_not_allowed",
            Self::AlgorithmNotAllowed => "alg_not_allowed",
            Self::UnknownKey => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::MissingExp => "missing_exp",
            Self::NotYetValid => "not_yet_valid",
            Self::BadAudience => "bad_audience",
            Self::BadIssuer => "bad_issuer",
            Self::BadClaims => "bad_claims",
        }
    }

    /// The RFC 6750 `error_description` sent to the client: coarse on purpose.
    fn client_description(self) -> &'static str {
        match self {
            Self::Expired => "The access token expired",
            Self::NotYetValid => "The access token is not valid yet",
            Self::TooLarge => "The access token is too large",
            Self::MalformedJwt => "The access token is malformed",
            _ => "The provided token is invalid",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why authorization refused an authenticated caller.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// The resource takes only application tokens, or only user tokens, and this is the other
    /// kind (WSO2 900905, 401, as WSO2's JWT authenticator answers a wrong grant type).
    #[error("token type not allowed for {template}")]
    IncorrectTokenType {
        /// The resource's URL template.
        template: String,
    },
    /// The token carries none of the scopes the resource requires (WSO2 900910).
    #[error("token lacks every scope of {template}")]
    InsufficientScope {
        /// The resource's URL template, e.g. `/{id}`.
        template: String,
        /// The scopes that would have sufficed (any one of them).
        required: Vec<String>,
    },
}

/// Why the upstream leg failed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connection refused, reset, TLS failure: 502.
    #[error("upstream unreachable")]
    Unreachable,
    /// Connect or read timeout: 504.
    #[error("upstream timed out")]
    TimedOut,
}

/// A refusal, whatever stage produced it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// From routing.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// From token validation.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// From the scope check.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// From the upstream leg.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Seconds a client should wait after a 503 900900.
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Serialize)]
struct FaultBody<'a> {
    code: &'a str,
    message: &'a str,
    description: &'a str,
}

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Route(RouteError::NoApi) => 404,
            Self::Route(RouteError::NoResource { .. }) => 403,
            Self::Route(RouteError::BadPath(_)) => 400,
            Self::Auth(AuthError::MissingCredentials { .. } | AuthError::InvalidToken(_)) => 401,
            Self::Auth(AuthError::KeyManagerUnavailable { .. }) => 503,
            Self::Scope(ScopeError::IncorrectTokenType { .. }) => 401,
            Self::Scope(ScopeError::InsufficientScope { .. }) => 403,
            Self::Upstream(UpstreamError::Unreachable) => 502,
            Self::Upstream(UpstreamError::TimedOut) => 504,
        }
    }

    /// The WSO2 error code as sent in the body (also the `outcome` metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Route(RouteError::NoApi) => "404",
            Self::Route(RouteError::NoResource { .. }) => "900906",
            Self::Route(RouteError::BadPath(_)) => "400",
            Self::Auth(AuthError::MissingCredentials { .. }) => "900902",
            Self::Auth(AuthError::InvalidToken(_)) => "900901",
            Self::Auth(AuthError::KeyManagerUnavailable { .. }) => "900900",
            Self::Scope(ScopeError::IncorrectTokenType { .. }) => "900905",
            Self::Scope(ScopeError::InsufficientScope { .. }) => "900910",
            Self::Upstream(UpstreamError::Unreachable) => "101503",
            Self::Upstream(UpstreamError::TimedOut) => "101504",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Self::Route(RouteError::NoApi) => "Not Found",
            Self::Route(RouteError::NoResource { .. }) => {
                "No matching resource found in the API for the given request"
            }
            Self::Route(RouteError::BadPath(_)) => "Bad Request",
            Self::Auth(AuthError::MissingCredentials { .. }) => "Missing Credentials",
            Self::Auth(AuthError::InvalidToken(_)) => "Invalid Credentials",
            Self::Auth(AuthError::KeyManagerUnavailable { .. }) => {
                "Unclassified Authentication Failure"
            }
            Self::Scope(_) => {
                "The access token does not allow you to access the requested resource"
            }
            Self::Upstream(UpstreamError::Unreachable) => "Error connecting to the back end",
            Self::Upstream(UpstreamError::TimedOut) => "Connection timed out",
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Route(RouteError::NoApi) => {
                "No matching resource found for given API Request".to_string()
            }
            Self::Route(RouteError::NoResource { context, version }) => format!(
                "Access failure for API: {context}, version: {version} status: (900906) - No \
                 matching resource found in the API for the given request. Check the API \
                 documentation and add a proper REST resource path to the invocation URL"
            ),
            Self::Route(RouteError::BadPath(why)) => format!("The request path is rejected: {why}"),
            Self::Auth(AuthError::MissingCredentials { header }) => format!(
                "Invalid Credentials. Make sure your API invocation call has a header: \
                 '{header} : Bearer ACCESS_TOKEN'"
            ),
            Self::Auth(AuthError::InvalidToken(InvalidReason::MalformedJwt)) => {
                "Invalid JWT token. Make sure you have provided the correct security credentials"
                    .to_string()
            }
            Self::Auth(AuthError::InvalidToken(_)) => {
                "Invalid Credentials. Make sure you have provided the correct security credentials"
                    .to_string()
            }
            Self::Auth(AuthError::KeyManagerUnavailable { .. }) => {
                "The key manager that validates this token cannot be reached. Retry later"
                    .to_string()
            }
            Self::Scope(ScopeError::InsufficientScope { template, .. }) => format!(
                "User is NOT authorized to access the Resource: {template}. Scope validation failed."
            ),
            Self::Scope(ScopeError::IncorrectTokenType { template }) => format!(
                "The resource {template} does not accept this type of access token (application or user)"
            ),
            Self::Upstream(UpstreamError::Unreachable) => {
                "The upstream endpoint could not be reached".to_string()
            }
            Self::Upstream(UpstreamError::TimedOut) => {
                "The upstream endpoint did not answer in time".to_string()
            }
        }
    }

    /// The JSON fault body.
    pub fn body(&self) -> Bytes {
        let description = self.description();
        let body = FaultBody {
            code: self.code(),
            message: self.message(),
            description: &description,
        };
        // Serializing three strings cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), on every 401 and on a 403 for scope.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::Auth(AuthError::MissingCredentials { .. }) => {
                Some(r#"Bearer realm="keygate""#.to_string())
            }
            Self::Auth(AuthError::InvalidToken(reason)) => Some(format!(
                r#"Bearer realm="keygate", error="invalid_token", error_description="{}""#,
                reason.client_description()
            )),
            Self::Scope(ScopeError::IncorrectTokenType { .. }) => Some(
                r#"Bearer realm="keygate", error="invalid_token", error_description="The access token type is not allowed for this resource""#
                    .to_string(),
            ),
            Self::Scope(ScopeError::InsufficientScope { required, .. }) => Some(format!(
                r#"Bearer realm="keygate", error="insufficient_scope", scope="{}""#,
                required.join(" ")
            )),
            _ => None,
        }
    }

    /// `Retry-After` seconds, on 503.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, Self::Auth(AuthError::KeyManagerUnavailable { .. }))
            .then_some(RETRY_AFTER_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_has_no_error_code_in_challenge() {
        let r = Rejection::from(AuthError::MissingCredentials {
            header: "Authorization".into(),
        });
        assert_eq!(r.status(), 401);
        assert_eq!(r.www_authenticate().unwrap(), r#"Bearer realm="keygate""#);
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(v["code"], "900902");
        assert_eq!(v["message"], "Missing Credentials");
    }

    #[test]
    fn scope_challenge_lists_required_scopes() {
        let r = Rejection::from(ScopeError::InsufficientScope {
            template: "/{id}".into(),
            required: vec!["a".into(), "b".into()],
        });
        assert_eq!(r.status(), 403);
        assert!(r
            .www_authenticate()
            .unwrap()
            .contains(r#"error="insufficient_scope", scope="a b""#));
    }

    #[test]
    fn outage_is_503_with_retry_after_and_no_challenge() {
        let r = Rejection::from(AuthError::KeyManagerUnavailable {
            key_manager: "km".into(),
            detail: "down".into(),
        });
        assert_eq!((r.status(), r.code()), (503, "900900"));
        assert_eq!(r.retry_after(), Some(RETRY_AFTER_SECS));
        assert!(r.www_authenticate().is_none());
        assert!(!String::from_utf8_lossy(&r.body()).contains("km"));
    }
}
