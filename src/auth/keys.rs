//! Verification keys with their algorithms pinned, built from a JWKS document or PEM.
//!
//! The algorithm a key may verify comes from the key, never from the token (RFC 8725 §3.1): the
//! JWK's `alg` when present, else the key type (RSA → RS*/PS*, EC P-256 → ES256, P-384 → ES384,
//! Ed25519 → EdDSA). Symmetric (`oct`) keys are never loaded, so `none` and HMAC-with-a-public-key
//! tokens have no key to verify against. Keys that cannot be parsed are skipped and reported, as
//! one broken key must not take the others down.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// One key and the algorithms it may verify.
pub struct VerifyKey {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// Algorithms pinned to this key.
    pub algs: Vec<Algorithm>,
    /// The parsed key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish()
    }
}

/// A key manager's current keys.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
    kidless: Vec<Arc<VerifyKey>>,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Whether keygate accepts this algorithm at all (asymmetric signatures only).
pub fn is_supported(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl KeySet {
    /// Build from keys.
    pub fn new(keys: Vec<VerifyKey>) -> Self {
        let keys: Vec<Arc<VerifyKey>> = keys.into_iter().map(Arc::new).collect();
        let mut by_kid: HashMap<String, Vec<Arc<VerifyKey>>> = HashMap::new();
        for k in &keys {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(k.clone());
            }
        }
        let kidless = keys.iter().filter(|k| k.kid.is_none()).cloned().collect();
        Self {
            keys,
            by_kid,
            kidless,
        }
    }

    /// Parse a JWKS document. Returns the set and one note per skipped key; a document with no
    /// usable key is an error.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<(Self, Vec<String>), String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in doc.keys.into_iter().enumerate() {
            match serde_json::from_value::<Jwk>(raw)
                .map_err(|e| e.to_string())
                .and_then(|j| from_jwk(&j))
            {
                Ok(Some(k)) => keys.push(k),
                Ok(None) => skipped.push(format!("keys[{i}]: not a signature verification key")),
                Err(e) => skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        if keys.is_empty() {
            return Err(format!("no usable signing key ({})", skipped.join("; ")));
        }
        Ok((Self::new(keys), skipped))
    }

    /// Parse one or more PEM blocks: public keys (`PUBLIC KEY`, `RSA PUBLIC KEY`) or X.509
    /// certificates. Keys carry no kid, so tokens are matched by algorithm.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block_rest = &rest[start..];
            let Some(end_marker) = block_rest.find("-----END ") else {
                return Err("unterminated PEM block".to_string());
            };
            let after_end = &block_rest[end_marker + 9..];
            let end = after_end
                .find("-----")
                .map(|e| end_marker + 9 + e + 5)
                .unwrap_or(block_rest.len());
            let block = &block_rest[..end];
            keys.push(pem_key(block)?);
            rest = &block_rest[end..];
        }
        if keys.is_empty() {
            return Err("no PEM block found".to_string());
        }
        Ok(Self::new(keys))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys?
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Is there a key with this kid?
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Keys with this kid.
    pub fn with_kid(&self, kid: &str) -> &[Arc<VerifyKey>] {
        self.by_kid.get(kid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Keys without a kid (PEM certificates, kid-less JWKs): tried for a token whose kid no key
    /// carries, as WSO2 does with a PEM certificate and Envoy with kid-less JWKs.
    pub fn kidless(&self) -> &[Arc<VerifyKey>] {
        &self.kidless
    }

    /// Every key (for tokens without a kid).
    pub fn all(&self) -> &[Arc<VerifyKey>] {
        &self.keys
    }

    /// Does any key accept this algorithm?
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.algs.contains(&alg))
    }
}

fn pem_key(block: &str) -> Result<VerifyKey, String> {
    let b = block.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(b) {
        return Ok(VerifyKey {
            kid: None,
            algs: RSA_ALGS.to_vec(),
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(b) {
        // The PEM does not tell us the curve cheaply; a wrong-curve signature fails to verify.
        return Ok(VerifyKey {
            kid: None,
            algs: vec![Algorithm::ES256, Algorithm::ES384],
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(b) {
        return Ok(VerifyKey {
            kid: None,
            algs: vec![Algorithm::EdDSA],
            key,
        });
    }
    Err("PEM block is not an RSA, EC or Ed25519 public key or certificate".to_string())
}

/// A JWK → key; `Ok(None)` for keys that are not for signature verification.
fn from_jwk(jwk: &Jwk) -> Result<Option<VerifyKey>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("unsupported EC curve".to_string()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return Err("unsupported OKP curve".to_string()),
        },
        // Symmetric keys are never used: an HMAC "public key" is the classic confusion attack.
        AlgorithmParameters::OctetKey(_) => return Ok(None),
        _ => return Err("unsupported key type".to_string()),
    };
    let algs = match jwk.common.key_algorithm {
        None => by_type,
        Some(ka) => match Algorithm::try_from(ka) {
            Ok(a) if by_type.contains(&a) => vec![a],
            Ok(a) if !is_supported(a) => return Ok(None),
            Ok(a) => return Err(format!("alg {a:?} does not fit the key type")),
            // RSA1_5, RSA-OAEP: encryption algorithms.
            Err(_) => return Ok(None),
        },
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key material: {e}"))?;
    Ok(Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        algs,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_hmac_and_enc_keys_and_pins_algs() {
        use crate::devidp::keys::{SigningAlg, SigningKey};
        let rs = SigningKey::generate(SigningAlg::RS256, "rs").jwk();
        let mut rs_noalg = SigningKey::generate(SigningAlg::RS256, "rs-noalg").jwk();
        rs_noalg.as_object_mut().unwrap().remove("alg");
        let es = SigningKey::generate(SigningAlg::ES256, "es").jwk();
        let mut enc = SigningKey::generate(SigningAlg::RS256, "enc").jwk();
        enc["use"] = serde_json::json!("enc");
        let mut mismatched = SigningKey::generate(SigningAlg::ES256, "mismatch").jwk();
        mismatched["alg"] = serde_json::json!("RS256");
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "h"},
            rs, rs_noalg, es, enc, mismatched, {"kty": "weird"}
        ]});
        let (set, skipped) = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 3, "{skipped:?}");
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(!set.has_kid("h") && !set.has_kid("enc") && !set.has_kid("mismatch"));
        assert_eq!(set.with_kid("rs")[0].algs, vec![Algorithm::RS256]);
        assert_eq!(set.with_kid("rs-noalg")[0].algs, RSA_ALGS.to_vec());
        assert_eq!(set.with_kid("es")[0].algs, vec![Algorithm::ES256]);
        assert!(!set.accepts(Algorithm::HS256));
    }

    #[test]
    fn pem_public_keys() {
        use crate::devidp::keys::{SigningAlg, SigningKey};
        let pem = SigningKey::generate(SigningAlg::RS256, "x")
            .public_pem()
            .unwrap();
        let two = format!("{pem}\n{pem}");
        let set = KeySet::from_pem(&two).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set
            .all()
            .iter()
            .all(|k| k.kid.is_none() && k.algs == RSA_ALGS.to_vec()));
    }

    #[test]
    fn empty_jwks_is_an_error() {
        assert!(KeySet::from_jwks_json(br#"{"keys":[]}"#).is_err());
        assert!(KeySet::from_jwks_json(b"nope").is_err());
        assert!(KeySet::from_pem("nothing").is_err());
    }
}
