//! Request enrichment: remove identity headers a client may have forged, add ours.
//!
//! The client's copies of the identity headers are removed on every request, including
//! anonymous ones, so an upstream can trust them. The token header is removed unless the API
//! forwards it (WSO2 removes it by default).

use crate::authz::Permit;
use crate::catalog::ApiDef;
use crate::config::UpstreamHeaders;
use bytes::Bytes;
use pingora::http::RequestHeader;

/// The identity header names, with their wire form prepared once per configuration: Pingora
/// takes a `Bytes` name as is, where a `HeaderName` would be copied into a new allocation on
/// every insert.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    names: UpstreamHeaders,
    subject: Bytes,
    client_id: Bytes,
    scopes: Bytes,
    key_manager: Bytes,
}

impl HeaderNames {
    /// Prepare `names`.
    pub fn new(names: &UpstreamHeaders) -> Self {
        let wire = |n: &http::HeaderName| Bytes::copy_from_slice(n.as_str().as_bytes());
        Self {
            subject: wire(&names.subject),
            client_id: wire(&names.client_id),
            scopes: wire(&names.scopes),
            key_manager: wire(&names.key_manager),
            names: names.clone(),
        }
    }
}

/// Apply to the upstream request.
pub fn apply(
    req: &mut RequestHeader,
    permit: &Permit,
    api: &ApiDef,
    names: &HeaderNames,
) -> pingora::Result<()> {
    // Also `X_Auth_Subject` and other spellings that CGI-style upstreams read as the same
    // variable (HTTP_X_AUTH_SUBJECT); nginx drops underscore headers for the same reason.
    let spoofed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            names.names.all().iter().any(|n| {
                k.len() == n.as_str().len()
                    && k.bytes()
                        .zip(n.as_str().bytes())
                        .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
            })
        })
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
    if !api.forward_authorization {
        req.remove_header(&api.authorization_header);
    }
    if let Some(p) = permit.principal() {
        if let Some(sub) = p.subject() {
            req.insert_header(names.subject.clone(), sub.clone())?;
        }
        if let Some(cid) = p.client_id() {
            req.insert_header(names.client_id.clone(), cid.clone())?;
        }
        req.insert_header(names.scopes.clone(), p.scopes_header().clone())?;
        req.insert_header(names.key_manager.clone(), p.km_name().clone())?;
    }
    Ok(())
}
