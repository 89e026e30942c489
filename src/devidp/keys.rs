//! Signing keys of the embedded identity provider, generated at start (no key material in the
//! repository), exported as JWKs and used to sign JWTs with aws-lc.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// Signature algorithms the provider can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 SHA-256, 2048-bit key.
    RS256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    RS512,
    /// RSASSA-PSS SHA-256, 2048-bit key.
    PS256,
    /// RSASSA-PSS SHA-384.
    PS384,
    /// RSASSA-PSS SHA-512.
    PS512,
    /// ECDSA P-256 SHA-256.
    ES256,
    /// ECDSA P-384 SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }
}

enum Material {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A key pair with its kid.
pub struct SigningKey {
    /// `kid`.
    pub kid: String,
    /// Algorithm.
    pub alg: SigningAlg,
    material: Material,
}

impl SigningKey {
    /// Generate a new key.
    pub fn generate(alg: SigningAlg, kid: &str) -> Self {
        let material = match alg {
            SigningAlg::RS256
            | SigningAlg::RS384
            | SigningAlg::RS512
            | SigningAlg::PS256
            | SigningAlg::PS384
            | SigningAlg::PS512 => Material::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
            ),
            SigningAlg::ES256 => Material::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("EC key generation"),
            ),
            SigningAlg::ES384 => Material::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .expect("EC key generation"),
            ),
            SigningAlg::EdDSA => {
                Material::Ed(Ed25519KeyPair::generate().expect("Ed25519 key generation"))
            }
        };
        Self {
            kid: kid.to_string(),
            alg,
            material,
        }
    }

    /// The public JWK (with `kid`, `alg`, `use: sig`).
    pub fn jwk(&self) -> Value {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.material {
            Material::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "n": b(p.modulus().big_endian_without_leading_zero()), "e": b(p.exponent().big_endian_without_leading_zero())})
            }
            Material::Ec(k) => {
                // Uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                let n = (point.len() - 1) / 2;
                let crv = if n == 48 { "P-384" } else { "P-256" };
                json!({"kty": "EC", "crv": crv, "x": b(&point[1..1 + n]), "y": b(&point[1 + n..])})
            }
            Material::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(k.public_key().as_ref())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key as a `PUBLIC KEY` PEM (RSA keys only).
    pub fn public_pem(&self) -> Option<String> {
        let Material::Rsa(k) = &self.material else {
            return None;
        };
        let der = k.public_key().as_der().ok()?;
        let b64 = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        Some(format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        ))
    }

    /// Sign `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.sign_as(self.alg, msg)
    }

    /// Sign `msg` as `alg` (an RSA key can sign RS256 or PS256 whatever it is published as: for
    /// algorithm-pinning tests).
    pub fn sign_as(&self, alg: SigningAlg, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    SigningAlg::PS256 => &signature::RSA_PSS_SHA256,
                    SigningAlg::PS384 => &signature::RSA_PSS_SHA384,
                    SigningAlg::PS512 => &signature::RSA_PSS_SHA512,
                    SigningAlg::RS384 => &signature::RSA_PKCS1_SHA384,
                    SigningAlg::RS512 => &signature::RSA_PKCS1_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                k.sign(padding, &rng, msg, &mut sig).expect("RSA signing");
                sig
            }
            Material::Ec(k) => k.sign(&rng, msg).expect("EC signing").as_ref().to_vec(),
            Material::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// A compact JWS over `claims`. `header` fields are merged over `{alg, typ, kid}`; a header
    /// field set to JSON null is removed (e.g. to mint a token without `kid`).
    pub fn mint(&self, header: Value, claims: &Value) -> String {
        self.mint_as(self.alg, header, claims)
    }

    /// [`SigningKey::mint`] signing as `alg` (see [`SigningKey::sign_as`]).
    pub fn mint_as(&self, alg: SigningAlg, header: Value, claims: &Value) -> String {
        let mut h = json!({"alg": alg.name(), "typ": "JWT", "kid": self.kid});
        if let (Some(h_obj), Value::Object(extra)) = (h.as_object_mut(), header) {
            for (k, v) in extra {
                if v.is_null() {
                    h_obj.remove(&k);
                } else {
                    h_obj.insert(k, v);
                }
            }
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.sign_as(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// An unsigned or HMAC-signed token with an arbitrary header, for attack tests: `alg: none`
/// (empty signature) or `HS256` keyed with `hmac_key` (e.g. the provider's public key bytes).
pub fn forge(header: &Value, claims: &Value, hmac_key: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = match hmac_key {
        Some(k) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k);
            URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, signing_input.as_bytes()).as_ref())
        }
        None => String::new(),
    };
    format!("{signing_input}.{sig}")
}
