//! Admission: the request-side stages in order (route → bearer → authenticate → authorize),
//! from a request head to a [`Permit`] or a [`Rejection`]. No Pingora phase lives here, so the
//! whole pipeline runs (and is benchmarked) without a socket; `gateway::request_filter` calls it.

use crate::auth::{bearer, verdict};
use crate::authz::{self, Permit};
use crate::catalog::route::normalise_path;
use crate::error::Rejection;
use crate::runtime::Runtime;

/// What admission learned about a request, kept for the later phases and the access log even
/// when the request is refused.
#[derive(Debug, Default)]
pub struct Trail {
    /// Index of the matched API, once routing (and for refusals, admission) got that far.
    pub api: Option<usize>,
    /// Index of the matched resource in its API.
    pub resource: Option<usize>,
    /// The normalised path, when it differs from the request's.
    pub normalised_path: Option<String>,
    /// The first 4 bytes of the token's SHA-256 (the access log names tokens by it, never by
    /// value).
    pub token_hash: Option<[u8; 4]>,
    /// The id of the key manager that validated the token (see
    /// [`crate::auth::Authenticator::key_manager_name`]): an integer, so recording it costs no
    /// reference count.
    pub key_manager: Option<u64>,
}

/// Route, authenticate and authorize one request.
pub async fn admit(
    rt: &Runtime,
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    trail: &mut Trail,
) -> Result<Permit, Rejection> {
    let path = normalise_path(path)?;
    let route = rt.routes.route(method, &path)?;
    if let std::borrow::Cow::Owned(p) = path {
        trail.normalised_path = Some(p);
    }
    trail.resource = Some(route.resource);
    let api = &rt.apis[route.api];
    let resource = &api.def.resources[route.resource];
    let result = async {
        if let Some(permit) = authz::allow_anonymous(route, resource) {
            return Ok(permit);
        }
        let token = bearer::extract(headers, &api.def.authorization_header)?;
        let digest = verdict::digest(token);
        trail.token_hash = Some([digest[0], digest[1], digest[2], digest[3]]);
        let (principal, _path) = rt
            .auth
            .authenticate_digested(token, digest, &api.kms)
            .await?;
        trail.key_manager = Some(principal.km_id);
        Ok(authz::check(route, resource, principal)?)
    }
    .await;
    trail.api = Some(route.api);
    result
}
