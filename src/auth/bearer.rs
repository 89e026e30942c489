//! Bearer token extraction, as WSO2's OAuthAuthenticator does it (reference §1.2).
//!
//! The header value is split on `,` then on single spaces; the element after `Bearer` is the
//! token, with surrounding `"` removed. Unlike WSO2, `Bearer` is matched case-insensitively
//! (RFC 7235 §2.1). Several header lines are read as one comma-joined value (RFC 9110 §5.3).
//! A token over [`MAX_TOKEN_LEN`] is refused before any parsing.

use crate::error::{AuthError, InvalidReason};
use http::HeaderMap;

/// Largest token accepted: 16 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Find the bearer token in `header` of `headers`.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    header: &http::HeaderName,
) -> Result<&'a str, AuthError> {
    let missing = || AuthError::MissingCredentials {
        header: canonical(header.as_str()),
    };
    for value in headers.get_all(header) {
        // A non-UTF-8 header cannot hold a base64url token.
        let Some(token) =
            fast_path(value.as_bytes()).or_else(|| value.to_str().ok().and_then(from_value))
        else {
            continue;
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken(InvalidReason::TooLarge));
        }
        return Ok(token);
    }
    Err(missing())
}

/// `Bearer <token>` where the token is visible ASCII without a comma or a quote: the common
/// case, read in one branch-free (vectorisable) pass. For such a value [`from_value`] gives the
/// same token (one word after `Bearer`, nothing to strip or trim); anything else, including
/// tabs, controls and non-ASCII bytes, takes that general path.
fn fast_path(value: &[u8]) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") || token.is_empty() {
        return None;
    }
    let plain = token.iter().fold(true, |ok, &b| {
        ok & (b > b' ') & (b < 0x7f) & (b != b',') & (b != b'"')
    });
    if plain {
        std::str::from_utf8(token).ok()
    } else {
        None
    }
}

/// The token in one header value, if any.
pub fn from_value(value: &str) -> Option<&str> {
    for part in value.split(',') {
        let mut words = part.split(' ').filter(|w| !w.is_empty());
        while let Some(w) = words.next() {
            if w.eq_ignore_ascii_case("bearer") {
                let token = words.next().map(strip_quotes).filter(|t| !t.is_empty());
                if token.is_some() {
                    return token;
                }
            }
        }
    }
    None
}

fn strip_quotes(t: &str) -> &str {
    t.trim_matches('"').trim()
}

/// `authorization` → `Authorization` for the fault description.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(from_value("Bearer abc"), Some("abc"));
        assert_eq!(from_value("bearer abc"), Some("abc"));
        assert_eq!(from_value("BEARER   abc  "), Some("abc"));
        assert_eq!(from_value("Basic xyz, Bearer abc"), Some("abc"));
        assert_eq!(from_value("Bearer \"abc\""), Some("abc"));
        assert_eq!(from_value("Basic xyz"), None);
        assert_eq!(from_value("Bearer"), None);
        assert_eq!(from_value("Bearer "), None);
        assert_eq!(from_value("Bearer \"\""), None);
        assert_eq!(from_value("abc"), None);
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let values: [&[u8]; 14] = [
            b"Bearer abc.def-_~+/=",
            b"bearer abc",
            b"BEARER abc",
            b"Bearer abc ",
            b"Bearer  abc",
            b"Bearer abc\t",
            b"Bearer \"abc\"",
            b"Bearer abc,Basic x",
            b"Bearer ab\x01c",
            b"Bearer ab\x7fc",
            b"Bearer ab\xc3\xa9c",
            b"Bearer ",
            b"Bearerabc",
            b"Basic abcdef",
        ];
        for v in values {
            let general = std::str::from_utf8(v)
                .ok()
                .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b)))
                .and_then(from_value);
            if let Some(fast) = fast_path(v) {
                assert_eq!(Some(fast), general, "{}", String::from_utf8_lossy(v));
            }
        }
        assert_eq!(fast_path(b"Bearer abc.def"), Some("abc.def"));
        assert_eq!(fast_path(b"Bearer abc\t"), None);
    }

    #[test]
    fn headers_and_limits() {
        let mut h = HeaderMap::new();
        let name = http::header::AUTHORIZATION;
        assert!(
            matches!(extract(&h, &name), Err(AuthError::MissingCredentials { header }) if header == "Authorization")
        );
        h.append(&name, "Basic x".parse().unwrap());
        h.append(&name, "Bearer tok".parse().unwrap());
        assert_eq!(extract(&h, &name).unwrap(), "tok");
        let mut big = HeaderMap::new();
        big.insert(
            &name,
            format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            extract(&big, &name),
            Err(AuthError::InvalidToken(InvalidReason::TooLarge))
        );
        let custom = http::HeaderName::from_static("x-api-token");
        assert!(
            matches!(extract(&h, &custom), Err(AuthError::MissingCredentials { header }) if header == "X-Api-Token")
        );
    }
}
