//! The client's own key for `private_key_jwt` (RFC 7523, OpenID Connect Core 9): read from a
//! PEM file, shown as a public JWK to register at the provider, and used to sign the client
//! assertions that replace a client secret.
//!
//! ring signs (already in the tree through rustls): RSA keys as RS256, EC P-256 keys as ES256.
//! PEM is decoded here rather than through jsonwebtoken's `use_pem` feature, which would add two
//! ASN.1 crates for what is a base64 body and, for SEC1 EC keys, a fixed PKCS#8 wrapper.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// How long a client assertion is valid: long enough for one request to the provider, short
/// enough that a copy is of little use (RFC 7523 3: short-lived).
pub const ASSERTION_LIFETIME_SECS: u64 = 60;

/// RFC 7523 2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a key file cannot be used; the text follows the setting's name on one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoPem,
    #[error("holds an encrypted private key; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    #[error("holds a PEM block whose body is not base64")]
    Base64,
    #[error("is not an RSA (2048 to 8192 bits) or EC P-256 private key ({0})")]
    Unsupported(String),
    #[error("holds a certificate whose public key is not the private key's")]
    CertificateMismatch,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct Inner {
    signer: Signer,
    kid: String,
    /// `x5t` and `x5t#S256` (RFC 7515 4.1.7-8) of a certificate in the key file: Entra ID
    /// finds the key by them.
    certificate_thumbprints: Option<(String, String)>,
    /// The public key's required JWK members (RFC 7638 3.2), without `kid`, `use` or `alg`.
    public: serde_json::Map<String, serde_json::Value>,
}

/// A parsed private key. Cheap to clone; its `Debug` shows the key id and algorithm only.
#[derive(Clone)]
pub struct ClientKey(Arc<Inner>);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.0.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads the first private key of a PEM text: PKCS#8 (`PRIVATE KEY`, RSA or EC P-256),
    /// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`; other blocks such as
    /// `EC PARAMETERS` are skipped). `kid` defaults to the RFC 7638 thumbprint. A
    /// `CERTIFICATE` in the same text (as Azure Key Vault exports them) must be the key's; its
    /// thumbprints then go into the assertions' headers.
    pub fn from_pem(text: &str, kid: Option<String>) -> Result<ClientKey, KeyError> {
        let blocks = pem_blocks(text)?;
        let (label, der) = blocks
            .iter()
            .find(|(label, _)| {
                matches!(
                    label.as_str(),
                    "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
                )
            })
            .ok_or(KeyError::NoPem)?;
        let rng = SystemRandom::new();
        let rejected = |e: ring::error::KeyRejected| KeyError::Unsupported(e.to_string());
        let signer = match label.as_str() {
            "RSA PRIVATE KEY" => Signer::Rsa(RsaKeyPair::from_der(der).map_err(rejected)?),
            "EC PRIVATE KEY" => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &sec1_to_pkcs8_p256(der),
                    &rng,
                )
                .map_err(rejected)?,
            ),
            _ => match RsaKeyPair::from_pkcs8(der) {
                Ok(rsa) => Signer::Rsa(rsa),
                Err(rsa_error) => Signer::Ec(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        der,
                        &rng,
                    )
                    // Say what RSA said unless the key is an EC one that ring turned down.
                    .map_err(|ec_error| {
                        if ec_error.to_string() == "WrongAlgorithm" {
                            rejected(rsa_error)
                        } else {
                            rejected(ec_error)
                        }
                    })?,
                ),
            },
        };
        let certificate_thumbprints = match blocks.iter().find(|(l, _)| l == "CERTIFICATE") {
            Some((_, certificate)) => {
                // The certificate's SubjectPublicKeyInfo holds the modulus or the point
                // verbatim: a certificate for another key cannot contain them.
                if !contains(certificate, &public_key_bytes(&signer)) {
                    return Err(KeyError::CertificateMismatch);
                }
                let digest = |alg| URL_SAFE_NO_PAD.encode(ring::digest::digest(alg, certificate));
                Some((
                    digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
                    digest(&ring::digest::SHA256),
                ))
            }
            None => None,
        };
        let public = public_members(&signer);
        let kid = kid.unwrap_or_else(|| thumbprint(&public));
        Ok(ClientKey(Arc::new(Inner {
            signer,
            kid,
            certificate_thumbprints,
            public,
        })))
    }

    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.0.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    /// The public key as a JWK to register at the provider: `kty` and its members, `kid`,
    /// `use: sig`, `alg`.
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = self.0.public.clone();
        jwk.insert("kid".into(), self.0.kid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.alg().into());
        serde_json::Value::Object(jwk)
    }

    /// The RFC 7638 thumbprint of the public key (SHA-256, base64url), whatever `kid` says.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.0.public)
    }

    /// A client assertion (RFC 7523 2.2, 3): `iss` = `sub` = the client id, `aud` = `audience`
    /// (the token endpoint), `iat` = `now`, `exp` = `now` + 60 s, a fresh random `jti`. The
    /// header names the key by `kid`, and by `x5t`/`x5t#S256` when the key file holds its
    /// certificate.
    pub fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
    ) -> Result<String, ring::error::Unspecified> {
        let mut header = serde_json::json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid()});
        if let Some((sha1, sha256)) = &self.0.certificate_thumbprints {
            header["x5t"] = sha1.as_str().into();
            header["x5t#S256"] = sha256.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": crate::random::token(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        match &self.0.signer {
            Signer::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)?;
                Ok(signature)
            }
            // The fixed (r || s) encoding is what JWS ES256 uses (RFC 7518 3.4).
            Signer::Ec(key) => Ok(key.sign(&rng, message)?.as_ref().to_vec()),
        }
    }
}

/// Every PEM block of the text: its label and DER bytes. Encrypted keys are refused here, as
/// nothing else would explain why they do not parse.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if label == "ENCRYPTED PRIVATE KEY" {
            return Err(KeyError::Encrypted);
        }
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            if line == end {
                ended = true;
                break;
            }
            // Traditional OpenSSL encryption puts headers (Proc-Type, DEK-Info) before the body.
            if line.starts_with("Proc-Type:") {
                return Err(KeyError::Encrypted);
            }
            body.push_str(line);
        }
        if !ended {
            break;
        }
        let der = STANDARD.decode(&body).map_err(|_| KeyError::Base64)?;
        blocks.push((label.to_owned(), der));
    }
    Ok(blocks)
}

/// The public key as it appears inside a certificate: the RSA modulus, or the EC point.
fn public_key_bytes(signer: &Signer) -> Vec<u8> {
    match signer {
        Signer::Rsa(key) => {
            let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
            parts.n
        }
        Signer::Ec(key) => key.public_key().as_ref().to_vec(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A SEC1 `ECPrivateKey` (what `openssl ecparam -genkey` writes) inside the PKCS#8 wrapper ring
/// reads: `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING sec1 }`.
/// A key on another curve then fails ring's check of the curve inside, as it should.
fn sec1_to_pkcs8_p256(sec1: &[u8]) -> Vec<u8> {
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, // SEQUENCE
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // 1.2.840.10045.2.1
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // 1.2.840.10045.3.1.7
    ];
    let mut content = vec![0x02, 0x01, 0x00]; // INTEGER 0
    content.extend_from_slice(ALGORITHM);
    content.push(0x04);
    der_length(sec1.len(), &mut content);
    content.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_length(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
}

fn public_members(signer: &Signer) -> serde_json::Map<String, serde_json::Value> {
    let b64 = |bytes: &[u8]| serde_json::Value::String(URL_SAFE_NO_PAD.encode(bytes));
    let mut members = serde_json::Map::new();
    match signer {
        Signer::Rsa(key) => {
            let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
            members.insert("kty".into(), "RSA".into());
            members.insert("n".into(), b64(&parts.n));
            members.insert("e".into(), b64(&parts.e));
        }
        Signer::Ec(key) => {
            // Uncompressed point: 0x04 || x || y, 32 bytes each on P-256.
            let point = key.public_key().as_ref();
            members.insert("kty".into(), "EC".into());
            members.insert("crv".into(), "P-256".into());
            members.insert("x".into(), b64(&point[1..33]));
            members.insert("y".into(), b64(&point[33..65]));
        }
    }
    members
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, without whitespace.
fn thumbprint(public: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut names: Vec<&String> = public.keys().collect();
    names.sort();
    let members: Vec<String> = names
        .into_iter()
        .map(|name| {
            format!(
                "{}:{}",
                serde_json::Value::from(name.as_str()),
                public[name]
            )
        })
        .collect();
    let canonical = format!("{{{}}}", members.join(","));
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

#[cfg(test)]
#[path = "client_key_tests.rs"]
mod tests;
