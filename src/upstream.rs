//! The upstream leg: which peer, with which timeouts, and the path it receives.
//!
//! The path after the API's context and version is appended to the upstream URL's path
//! (`/orders/v1/42?x=1` to `http://h:9000/api` becomes `/api/42?x=1`), and `Host` becomes the
//! upstream's authority, as WSO2 and nginx's `proxy_pass` do.

use crate::authz::Permit;
use crate::catalog::ApiDef;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

/// The peer for a permitted request.
pub fn peer(_permit: &Permit, api: &ApiDef) -> HttpPeer {
    let u = &api.upstream;
    let mut peer = HttpPeer::new(u.addr, u.tls, u.host.clone());
    peer.options.connection_timeout = Some(api.timeouts.connect);
    peer.options.total_connection_timeout = Some(api.timeouts.connect);
    peer.options.read_timeout = Some(api.timeouts.read);
    peer.options.write_timeout = Some(api.timeouts.write);
    peer
}

/// The upstream path and query for a request path (already normalised) after `base_len`.
pub fn upstream_path(api: &ApiDef, path: &str, base_len: usize, query: Option<&str>) -> String {
    let rest = &path[base_len.min(path.len())..];
    let mut out = String::with_capacity(
        api.upstream.base_path.len() + rest.len() + 1 + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str(&api.upstream.base_path);
    if !rest.is_empty() && !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Rewrite the request line and `Host` for the upstream.
pub fn rewrite(
    req: &mut RequestHeader,
    permit: &Permit,
    api: &ApiDef,
    normalised_path: Option<&str>,
) -> pingora::Result<()> {
    let path = normalised_path.unwrap_or(req.uri.path());
    let target = upstream_path(api, path, permit.route().base_len, req.uri.query());
    let uri: http::Uri = target.parse().map_err(|e| {
        pingora::Error::because(pingora::ErrorType::InternalError, "upstream URI", e)
    })?;
    req.set_uri(uri);
    req.insert_header(http::header::HOST, api.upstream.authority.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{parse_upstream, KeyManagerSelector, Timeouts};

    fn api(up: &str) -> ApiDef {
        ApiDef {
            name: "a".into(),
            context: "/orders".into(),
            version: "v1".into(),
            default_version: true,
            upstream: parse_upstream(up).unwrap(),
            timeouts: Timeouts::default(),
            key_managers: KeyManagerSelector::All,
            authorization_header: http::header::AUTHORIZATION,
            forward_authorization: false,
            scopes: vec![],
            resources: vec![],
            source: "t".into(),
        }
    }

    #[test]
    fn paths() {
        let a = api("http://127.0.0.1:9000/api");
        assert_eq!(
            upstream_path(&a, "/orders/v1/42", 10, Some("x=1")),
            "/api/42?x=1"
        );
        assert_eq!(upstream_path(&a, "/orders/v1", 10, None), "/api");
        assert_eq!(upstream_path(&a, "/orders/42", 7, None), "/api/42");
        let b = api("http://127.0.0.1:9000");
        assert_eq!(upstream_path(&b, "/orders/v1", 10, None), "/");
        assert_eq!(upstream_path(&b, "/orders/v1/", 10, None), "/");
        assert_eq!(upstream_path(&b, "/orders/v1/a/b", 10, Some("")), "/a/b?");
    }
}
