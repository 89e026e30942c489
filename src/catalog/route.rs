//! The route table: request path → API (longest context prefix) → resource (verb + template).
//!
//! Precedence follows WSO2/Synapse: a literal segment beats `{param}`, which beats a trailing
//! `/*`; a trailing slash and the query string do not matter. Each verb has a segment trie, so
//! matching costs one hash lookup per segment and never allocates.
//!
//! Paths are normalised *before* matching and the normalised path is what goes upstream: dot
//! segments, encoded slashes and backslashes are refused, repeated slashes are merged and
//! percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2). Otherwise `/%61dmin` or
//! `//admin` could match a permissive template here and reach `/admin` on an upstream that
//! normalises, the path-confusion class of auth bypasses. Path parameters (`;`) are refused too:
//! Java servers read `/..;/admin` as `/../admin` and `/special;x` as `/special`.

use super::ApiDef;
use crate::error::RouteError;
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    param: Option<Box<Node>>,
    wildcard: Option<usize>,
    end: Option<usize>,
}

impl Node {
    fn insert(&mut self, template: &str, resource: usize) {
        let t = template.trim_matches('/');
        let mut node = self;
        if !t.is_empty() {
            for seg in t.split('/') {
                if seg == "*" {
                    node.wildcard.get_or_insert(resource);
                    return;
                }
                node = if seg.starts_with('{') && seg.ends_with('}') {
                    node.param.get_or_insert_with(Default::default)
                } else {
                    node.literal.entry(seg.to_string()).or_default()
                };
            }
        }
        node.end.get_or_insert(resource);
    }

    /// `rest` is the remaining path without its leading `/`; empty at the end. With `wild`
    /// false only literal and `{param}` segments may match.
    fn find(&self, rest: &str, wild: bool) -> Option<usize> {
        if rest.is_empty() {
            return self.end.or(if wild { self.wildcard } else { None });
        }
        let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(r) = self.literal.get(seg).and_then(|n| n.find(tail, wild)) {
            return Some(r);
        }
        if !seg.is_empty() {
            if let Some(r) = self.param.as_ref().and_then(|n| n.find(tail, wild)) {
                return Some(r);
            }
        }
        if wild {
            self.wildcard
        } else {
            None
        }
    }

    /// Any match without a wildcard beats every wildcard match (Synapse keeps searching while
    /// the found template contains `/*`); among equals, literal beats `{param}`.
    fn best(&self, rest: &str) -> Option<usize> {
        self.find(rest, false).or_else(|| self.find(rest, true))
    }
}

#[derive(Debug)]
struct CompiledApi {
    by_verb: HashMap<http::Method, Node>,
}

/// A matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the API in the table's API list.
    pub api: usize,
    /// Index of the resource in that API's `resources`.
    pub resource: usize,
    /// Length of the matched base path (`/ctx/ver` or `/ctx`) in the normalised path.
    pub base_len: usize,
}

/// The compiled table.
#[derive(Debug)]
pub struct RouteTable {
    bases: HashMap<String, usize>,
    apis: Vec<CompiledApi>,
    contexts: Vec<(String, String)>,
    max_depth: usize,
}

impl RouteTable {
    /// Compile. API definitions were validated (unique base paths) at load.
    pub fn new(apis: &[ApiDef]) -> Self {
        let mut bases = HashMap::new();
        let mut max_depth = 0;
        let mut compiled = Vec::with_capacity(apis.len());
        for (i, api) in apis.iter().enumerate() {
            for base in api.base_paths() {
                max_depth = max_depth.max(base.matches('/').count());
                bases.entry(base).or_insert(i);
            }
            let mut by_verb: HashMap<http::Method, Node> = HashMap::new();
            for (r, res) in api.resources.iter().enumerate() {
                by_verb
                    .entry(res.verb.clone())
                    .or_default()
                    .insert(&res.target, r);
            }
            compiled.push(CompiledApi { by_verb });
        }
        Self {
            bases,
            apis: compiled,
            contexts: apis
                .iter()
                .map(|a| (a.context.clone(), a.version.clone()))
                .collect(),
            max_depth,
        }
    }

    /// Match a *normalised* path (see [`normalise_path`]).
    pub fn route(&self, method: &http::Method, path: &str) -> Result<RouteMatch, RouteError> {
        let (api, base_len) = self.find_api(path).ok_or(RouteError::NoApi)?;
        let sub = path[base_len..].trim_matches('/');
        let no_resource = || {
            let (context, version) = self.contexts[api].clone();
            RouteError::NoResource { context, version }
        };
        let resource = self.apis[api]
            .by_verb
            .get(method)
            .and_then(|n| n.best(sub))
            .ok_or_else(no_resource)?;
        Ok(RouteMatch {
            api,
            resource,
            base_len,
        })
    }

    fn find_api(&self, path: &str) -> Option<(usize, usize)> {
        // Candidate prefixes end at a segment boundary; try the longest first.
        let mut ends: [usize; 16] = [0; 16];
        let mut n = 0;
        for (i, b) in path.bytes().enumerate().skip(1) {
            if b == b'/' {
                if n == ends.len() || n >= self.max_depth {
                    break;
                }
                ends[n] = i;
                n += 1;
            }
        }
        if n < ends.len() && n < self.max_depth && path.len() > 1 {
            ends[n] = path.trim_end_matches('/').len();
            n += 1;
        }
        for &end in ends[..n].iter().rev() {
            if let Some(&api) = self.bases.get(&path[..end]) {
                return Some((api, end));
            }
        }
        None
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalise a request path for matching and forwarding, or refuse it.
pub fn normalise_path(path: &str) -> Result<Cow<'_, str>, RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError::BadPath("the path must start with /"));
    }
    let bytes = path.as_bytes();
    let needs_work = bytes.iter().any(|&b| matches!(b, b'%' | b'\\' | b';')) || path.contains("//");
    let out: Cow<'_, str> = if needs_work {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'\\' => return Err(RouteError::BadPath("backslash in path")),
                b';' => return Err(RouteError::BadPath("path parameters (;) are not allowed")),
                b'%' => {
                    let (h, l) = match (
                        bytes.get(i + 1).and_then(|&x| hex(x)),
                        bytes.get(i + 2).and_then(|&x| hex(x)),
                    ) {
                        (Some(h), Some(l)) => (h, l),
                        _ => return Err(RouteError::BadPath("invalid percent-encoding")),
                    };
                    let decoded = h * 16 + l;
                    match decoded {
                        b'/' | b'\\' => return Err(RouteError::BadPath("encoded slash in path")),
                        b';' => {
                            return Err(RouteError::BadPath("path parameters (;) are not allowed"))
                        }
                        0 => return Err(RouteError::BadPath("encoded NUL in path")),
                        d if is_unreserved(d) => out.push(d),
                        _ => out.extend_from_slice(&[
                            b'%',
                            bytes[i + 1].to_ascii_uppercase(),
                            bytes[i + 2].to_ascii_uppercase(),
                        ]),
                    }
                    i += 3;
                    continue;
                }
                b'/' if out.last() == Some(&b'/') => {}
                _ => out.push(b),
            }
            i += 1;
        }
        // Only ASCII was decoded, and non-ASCII input bytes were copied whole.
        Cow::Owned(String::from_utf8(out).map_err(|_| RouteError::BadPath("invalid UTF-8"))?)
    } else {
        Cow::Borrowed(path)
    };
    if out.split('/').any(|s| s == "." || s == "..") {
        return Err(RouteError::BadPath("dot segments are not allowed"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{parse_upstream, AuthType, KeyManagerSelector, ResourceDef, Timeouts};
    use http::Method;

    fn api(context: &str, version: &str, default: bool, res: &[(&str, &str)]) -> ApiDef {
        ApiDef {
            name: context.into(),
            context: context.into(),
            version: version.into(),
            default_version: default,
            upstream: parse_upstream("http://127.0.0.1:1").unwrap(),
            timeouts: Timeouts::default(),
            key_managers: KeyManagerSelector::All,
            authorization_header: http::header::AUTHORIZATION,
            forward_authorization: false,
            scopes: vec![],
            resources: res
                .iter()
                .map(|(v, t)| ResourceDef {
                    verb: v.parse().unwrap(),
                    target: t.to_string(),
                    scopes: vec![],
                    auth: AuthType::Any,
                })
                .collect(),
            source: "t".into(),
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(&[
            api(
                "/orders",
                "v1",
                true,
                &[
                    ("GET", "/*"),
                    ("GET", "/{id}"),
                    ("GET", "/special"),
                    ("GET", "/{id}/items/*"),
                    ("POST", "/"),
                    ("GET", "/"),
                ],
            ),
            api("/orders/admin", "v2", false, &[("GET", "/x")]),
        ])
    }

    fn r(t: &RouteTable, m: &str, p: &str) -> Result<(usize, usize, usize), RouteError> {
        t.route(&m.parse::<Method>().unwrap(), p)
            .map(|m| (m.api, m.resource, m.base_len))
    }

    #[test]
    fn precedence_literal_param_wildcard() {
        let t = table();
        assert_eq!(r(&t, "GET", "/orders/v1/special").unwrap().1, 2);
        assert_eq!(r(&t, "GET", "/orders/v1/42").unwrap().1, 1);
        assert_eq!(r(&t, "GET", "/orders/v1/42/extra").unwrap().1, 0);
        assert_eq!(r(&t, "GET", "/orders/v1/42/items").unwrap().1, 3);
        assert_eq!(r(&t, "GET", "/orders/v1/42/items/7/8").unwrap().1, 3);
        assert_eq!(r(&t, "GET", "/orders/v1/").unwrap().1, 5);
        assert_eq!(r(&t, "GET", "/orders/v1").unwrap().1, 5);
    }

    #[test]
    fn default_version_and_trailing_slash() {
        let t = table();
        assert_eq!(r(&t, "GET", "/orders/42").unwrap(), (0, 1, 7));
        assert_eq!(r(&t, "GET", "/orders/v1/42/").unwrap(), (0, 1, 10));
        assert_eq!(r(&t, "POST", "/orders/v1").unwrap().1, 4);
    }

    #[test]
    fn longest_context_wins_and_misses() {
        let t = table();
        assert_eq!(r(&t, "GET", "/orders/admin/v2/x").unwrap().0, 1);
        assert_eq!(r(&t, "GET", "/nope"), Err(RouteError::NoApi));
        assert_eq!(r(&t, "GET", "/"), Err(RouteError::NoApi));
        assert!(matches!(
            r(&t, "DELETE", "/orders/v1/1"),
            Err(RouteError::NoResource { .. })
        ));
        assert!(matches!(
            r(&t, "GET", "/orders/admin/v2/y"),
            Err(RouteError::NoResource { .. })
        ));
        assert_eq!(r(&t, "GET", "/ordersx/v1/1"), Err(RouteError::NoApi));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise_path("/a/b").unwrap(), "/a/b");
        assert_eq!(normalise_path("//a///b").unwrap(), "/a/b");
        assert_eq!(normalise_path("/%61dmin/%7e").unwrap(), "/admin/~");
        assert_eq!(normalise_path("/a%20b").unwrap(), "/a%20b");
        for bad in [
            "/a/../b",
            "/a/%2e%2E/b",
            "/a/.",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%zz",
            "/a%0",
            "x",
            "/%00",
        ] {
            assert!(normalise_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_match_without_wildcard_beats_a_wildcard() {
        let t = RouteTable::new(&[api(
            "/w",
            "v1",
            false,
            &[("GET", "/a/*"), ("GET", "/{x}/b")],
        )]);
        assert_eq!(r(&t, "GET", "/w/v1/a/b").unwrap().1, 1);
        assert_eq!(r(&t, "GET", "/w/v1/a/c").unwrap().1, 0);
        assert_eq!(r(&t, "GET", "/w/v1/a").unwrap().1, 0);
    }

    #[test]
    fn many_segments_do_not_panic() {
        let t = table();
        let long = "/x".repeat(100);
        assert_eq!(r(&t, "GET", &long), Err(RouteError::NoApi));
        let deep = format!("/orders/v1{}", "/y".repeat(100));
        assert_eq!(r(&t, "GET", &deep).unwrap().1, 0);
    }
}
