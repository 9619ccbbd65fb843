use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

use super::*;

const RSA_PKCS1: &str = include_str!("../tests/data/test-only-keys/rsa-key.pem");
const RSA_PKCS8: &str = include_str!("../tests/data/test-only-keys/rsa-key-pkcs8.pem");
const RSA_JWK: &str = include_str!("../tests/data/test-only-keys/rsa-jwk.json");
const EC_PKCS8: &str = include_str!("../tests/data/test-only-keys/ec-p256-key.pem");
const EC_SEC1: &str = include_str!("../tests/data/test-only-keys/ec-p256-key-sec1.pem");
const EC_JWK: &str = include_str!("../tests/data/test-only-keys/ec-p256-jwk.json");
const EC_P384: &str = include_str!("../tests/data/test-only-keys/ec-p384-key.pem");
const RSA_PUBLIC: &str = include_str!("../tests/data/test-only-keys/rsa-public.pem");
const RSA_CERT: &str = include_str!("../tests/data/test-only-keys/rsa-cert.pem");
const OTHER_RSA_CERT: &str = include_str!("../tests/data/test-only-keys/other-rsa-cert.pem");

fn jwk(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("jwk")
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    // RFC 7638 3.1's example key and its thumbprint.
    let mut public = serde_json::Map::new();
    public.insert("kty".into(), "RSA".into());
    public.insert("e".into(), "AQAB".into());
    public.insert(
        "n".into(),
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B\
         JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD\
         W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM\
         QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            .into(),
    );
    assert_eq!(
        thumbprint(&public),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn rsa_keys_in_pkcs1_and_pkcs8_are_one_key() {
    let pkcs1 = ClientKey::from_pem(RSA_PKCS1, None).expect("PKCS#1");
    let pkcs8 = ClientKey::from_pem(RSA_PKCS8, None).expect("PKCS#8");
    assert_eq!(pkcs1.public_jwk(), pkcs8.public_jwk());
    let public = pkcs1.public_jwk();
    let expected = jwk(RSA_JWK);
    assert_eq!(public["kty"], "RSA");
    assert_eq!(public["n"], expected["n"]);
    assert_eq!(public["e"], expected["e"]);
    assert_eq!(public["alg"], "RS256");
    assert_eq!(public["use"], "sig");
    assert_eq!(public["kid"], pkcs1.thumbprint().as_str());
}

#[test]
fn ec_keys_in_sec1_and_pkcs8_are_one_key() {
    let sec1 = ClientKey::from_pem(EC_SEC1, None).expect("SEC1");
    let pkcs8 = ClientKey::from_pem(EC_PKCS8, None).expect("PKCS#8");
    assert_eq!(sec1.public_jwk(), pkcs8.public_jwk());
    let public = sec1.public_jwk();
    let expected = jwk(EC_JWK);
    for member in ["kty", "crv", "x", "y"] {
        assert_eq!(public[member], expected[member], "{member}");
    }
    assert_eq!(public["alg"], "ES256");
    // `openssl ecparam -genkey` writes the curve's parameters first.
    let with_parameters = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{EC_SEC1}"
    );
    assert_eq!(
        ClientKey::from_pem(&with_parameters, None)
            .expect("parameters skipped")
            .public_jwk(),
        public
    );
}

#[test]
fn an_explicit_key_id_replaces_the_thumbprint_in_the_jwk_only() {
    let key = ClientKey::from_pem(EC_PKCS8, Some("corp-2026".into())).expect("key");
    assert_eq!(key.kid(), "corp-2026");
    assert_eq!(key.public_jwk()["kid"], "corp-2026");
    assert_ne!(key.thumbprint(), "corp-2026");
}

fn verify(key: &ClientKey, token: &str) -> serde_json::Value {
    let public = key.public_jwk();
    let s = |m: &str| public[m].as_str().expect("member").to_owned();
    let (decoding, alg) = match key.alg() {
        "RS256" => (
            DecodingKey::from_rsa_components(&s("n"), &s("e")).expect("rsa"),
            Algorithm::RS256,
        ),
        _ => (
            DecodingKey::from_ec_components(&s("x"), &s("y")).expect("ec"),
            Algorithm::ES256,
        ),
    };
    let mut validation = Validation::new(alg);
    validation.set_audience(&["https://idp.example/token"]);
    validation.set_issuer(&["gatehouse"]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    decode::<serde_json::Value>(token, &decoding, &validation)
        .expect("the assertion verifies with the published key")
        .claims
}

#[test]
fn client_assertions_verify_with_the_public_jwk_and_carry_rfc_7523_claims() {
    let now = crate::identity::now_unix();
    for pem in [RSA_PKCS1, EC_SEC1] {
        let key = ClientKey::from_pem(pem, None).expect("key");
        let first = key
            .client_assertion("gatehouse", "https://idp.example/token", now)
            .expect("signed");
        let second = key
            .client_assertion("gatehouse", "https://idp.example/token", now)
            .expect("signed");
        let header = decode_header(&first).expect("header");
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let claims = verify(&key, &first);
        assert_eq!(claims["sub"], "gatehouse");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + ASSERTION_LIFETIME_SECS);
        let jti = claims["jti"].as_str().expect("jti");
        assert!(jti.len() >= 32, "an unguessable jti");
        assert_ne!(verify(&key, &second)["jti"], claims["jti"], "jti is unique");
    }
}

#[test]
fn a_certificate_beside_the_key_names_it_by_x5t_as_entra_id_wants() {
    // Azure Key Vault exports the certificate and the key in one PEM, in either order.
    for text in [
        format!("{RSA_PKCS1}{RSA_CERT}"),
        format!("{RSA_CERT}{RSA_PKCS8}"),
    ] {
        let key = ClientKey::from_pem(&text, None).expect("key and its certificate");
        let assertion = key
            .client_assertion("gatehouse", "https://idp.example/token", 1_000)
            .expect("signed");
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(assertion.split('.').next().expect("header"))
                .expect("base64url"),
        )
        .expect("json");
        // `openssl x509 -fingerprint -sha1 / -sha256` of rsa-cert.pem, in base64url.
        assert_eq!(header["x5t"], "-qbvlbg6Yz5lZsf76iQaJPOJyrw");
        assert_eq!(
            header["x5t#S256"],
            "bTIGJ2bTFh1Y3P3dDDj43oXzLV5vZ-AFvCA8SS9CYXw"
        );
        assert_eq!(header["kid"], key.thumbprint().as_str());
        assert_eq!(
            key.public_jwk(),
            ClientKey::from_pem(RSA_PKCS1, None)
                .expect("key")
                .public_jwk()
        );
    }
    let plain = ClientKey::from_pem(RSA_PKCS1, None).expect("key");
    let assertion = plain
        .client_assertion("gatehouse", "https://idp.example/token", 1_000)
        .expect("signed");
    assert!(decode_header(&assertion).expect("header").x5t.is_none());
    assert_eq!(
        ClientKey::from_pem(&format!("{RSA_PKCS1}{OTHER_RSA_CERT}"), None).err(),
        Some(KeyError::CertificateMismatch)
    );
}

#[test]
fn unusable_key_files_say_why() {
    assert_eq!(
        ClientKey::from_pem("not a key", None).err(),
        Some(KeyError::NoPem)
    );
    assert_eq!(
        ClientKey::from_pem(RSA_PUBLIC, None).err(),
        Some(KeyError::NoPem),
        "a public key is not a private key"
    );
    assert_eq!(
        ClientKey::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            None
        )
        .err(),
        Some(KeyError::Encrypted)
    );
    assert_eq!(
        ClientKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n",
            None
        )
        .err(),
        Some(KeyError::Encrypted)
    );
    assert_eq!(
        ClientKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            None
        )
        .err(),
        Some(KeyError::Base64)
    );
    assert!(matches!(
        ClientKey::from_pem(EC_P384, None).err(),
        Some(KeyError::Unsupported(_))
    ));
    let truncated: String = RSA_PKCS1.lines().take(5).collect::<Vec<_>>().join("\n");
    assert_eq!(
        ClientKey::from_pem(&truncated, None).err(),
        Some(KeyError::NoPem),
        "no END line"
    );
}

#[test]
fn debug_shows_no_key_material() {
    let key = ClientKey::from_pem(RSA_PKCS1, None).expect("key");
    let shown = format!("{key:?}");
    assert!(
        shown.contains(key.kid()) && shown.contains("RS256"),
        "{shown}"
    );
    let n = key.public_jwk()["n"].as_str().expect("n").to_owned();
    assert!(!shown.contains(&n[..16]));
}
