//! JWT classification, the unverified peek that routes a token, and signature verification.
//!
//! The peek reads `alg`, `kid` and `iss` *without* verifying anything; it only decides which key
//! manager and which keys to try (named as unverified everywhere it is used). The verified claims
//! come from [`verify`], which lets jsonwebtoken check the signature with the algorithm pinned to
//! the key, then `exp`/`nbf` (with the key manager's skew), `iss` and `aud`.

use super::keys::{is_supported, KeySet};
use crate::error::InvalidReason;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::str::FromStr;

/// The unverified routing facts of a JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedJwt {
    /// Header `alg`, already known to be an asymmetric algorithm we support.
    pub alg: Algorithm,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Payload `iss` (unverified).
    pub iss: Option<String>,
}

/// What a token looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenShape {
    /// Three segments and a decodable header.
    Jwt(UnverifiedJwt),
    /// Anything else without dots, or with a header that does not decode (as WSO2: opaque).
    Opaque,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct RawIss {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

fn b64(seg: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(seg.trim_end_matches('=')).ok()
}

/// Classify and peek. Refuses a dotted token that is not three segments, and `none`/HMAC/unknown
/// algorithms, before any key manager is involved.
pub fn classify(token: &str) -> Result<TokenShape, InvalidReason> {
    if !token.contains('.') {
        return Ok(TokenShape::Opaque);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidReason::MalformedJwt);
    };
    let Some(header) = b64(h).and_then(|b| serde_json::from_slice::<RawHeader>(&b).ok()) else {
        return Ok(TokenShape::Opaque);
    };
    let alg = Algorithm::from_str(&header.alg).map_err(|_| InvalidReason::AlgorithmNotAllowed)?;
    if !is_supported(alg) {
        return Err(InvalidReason::AlgorithmNotAllowed);
    }
    let payload = b64(p)
        .and_then(|b| serde_json::from_slice::<RawIss>(&b).ok())
        .ok_or(InvalidReason::MalformedJwt)?;
    let iss = match payload.iss {
        Some(serde_json::Value::String(s)) => Some(s),
        None | Some(serde_json::Value::Null) => None,
        Some(_) => return Err(InvalidReason::MalformedJwt),
    };
    Ok(TokenShape::Jwt(UnverifiedJwt {
        alg,
        kid: header.kid,
        iss,
    }))
}

/// The verified claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Validation settings of one key manager, for one algorithm.
pub fn validation(
    alg: Algorithm,
    issuer: &str,
    audiences: &[String],
    skew_secs: u64,
    require_exp: bool,
) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = skew_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["iss"];
    if require_exp {
        required.push("exp");
    }
    v.set_required_spec_claims(&required);
    v.set_issuer(&[issuer]);
    if audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(audiences);
    }
    v
}

fn map_error(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => InvalidReason::BadSignature,
        ErrorKind::ExpiredSignature => InvalidReason::Expired,
        ErrorKind::ImmatureSignature => InvalidReason::NotYetValid,
        ErrorKind::InvalidAudience => InvalidReason::BadAudience,
        ErrorKind::InvalidIssuer => InvalidReason::BadIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => InvalidReason::MissingExp,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => InvalidReason::BadIssuer,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            InvalidReason::AlgorithmNotAllowed
        }
        _ => InvalidReason::MalformedJwt,
    }
}

/// Outcome of key selection before any signature check.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyChoice {
    /// Keys to try exist.
    Some,
    /// The token has a kid the set does not know, and no kid-less key takes its algorithm.
    UnknownKid,
    /// The token has a kid the set does not know; kid-less keys take its algorithm.
    KidlessFallback,
    /// No key accepts the token's algorithm.
    NoKeyForAlg,
}

/// Is there a key to try for this token?
pub fn choose(keys: &KeySet, jwt: &UnverifiedJwt) -> KeyChoice {
    match &jwt.kid {
        Some(kid) => {
            let with = keys.with_kid(kid);
            if with.is_empty() {
                if keys.kidless().iter().any(|k| k.algs.contains(&jwt.alg)) {
                    KeyChoice::KidlessFallback
                } else {
                    KeyChoice::UnknownKid
                }
            } else if with.iter().any(|k| k.algs.contains(&jwt.alg)) {
                KeyChoice::Some
            } else {
                KeyChoice::NoKeyForAlg
            }
        }
        None if keys.accepts(jwt.alg) => KeyChoice::Some,
        None => KeyChoice::NoKeyForAlg,
    }
}

/// Verify `token` against the candidate keys (by kid, or every key pinned to its alg).
pub fn verify(
    token: &str,
    jwt: &UnverifiedJwt,
    keys: &KeySet,
    validation: &Validation,
) -> Result<Claims, InvalidReason> {
    let candidates = match &jwt.kid {
        Some(kid) if keys.has_kid(kid) => keys.with_kid(kid),
        Some(_) => keys.kidless(),
        None => keys.all(),
    };
    let mut last = InvalidReason::AlgorithmNotAllowed;
    for key in candidates.iter().filter(|k| k.algs.contains(&jwt.alg)) {
        match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                let reason = map_error(e.kind());
                if reason != InvalidReason::BadSignature {
                    // The signature verified (claims are checked after it): this is the verdict.
                    return Err(reason);
                }
                last = reason;
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn shapes() {
        assert_eq!(classify("opaque-token").unwrap(), TokenShape::Opaque);
        assert_eq!(classify("a.b"), Err(InvalidReason::MalformedJwt));
        assert_eq!(classify("a.b.c.d"), Err(InvalidReason::MalformedJwt));
        assert_eq!(classify("!!.b.c").unwrap(), TokenShape::Opaque);
        let h = seg(serde_json::json!({"alg": "RS256", "kid": "k"}));
        let p = seg(serde_json::json!({"iss": "https://i"}));
        assert_eq!(
            classify(&format!("{h}.{p}.sig")).unwrap(),
            TokenShape::Jwt(UnverifiedJwt {
                alg: Algorithm::RS256,
                kid: Some("k".into()),
                iss: Some("https://i".into())
            })
        );
        assert_eq!(
            classify(&format!("{h}.!!.sig")),
            Err(InvalidReason::MalformedJwt)
        );
    }

    #[test]
    fn none_and_hmac_refused_at_the_peek() {
        let p = seg(serde_json::json!({"iss": "https://i"}));
        for alg in ["none", "HS256", "HS512", "XX"] {
            let h = seg(serde_json::json!({"alg": alg}));
            assert_eq!(
                classify(&format!("{h}.{p}.")),
                Err(InvalidReason::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }
}
