//! The stored record: round trips, sealing, format 1, errors that quote nothing, keys.

use super::*;
use crate::identity::Token;

fn session() -> Session {
    Session {
        identity: Identity {
            subject: "ann".into(),
            email: Some("ann@example.com".into()),
            email_verified: Some(true),
            name: Some("Ann \"Q\" Zoë".into()),
            preferred_username: Some("ann".into()),
            groups: vec!["staff".into(), "admins".into()],
            claims: [("dept".to_owned(), "R&D".to_owned())].into(),
            ..Identity::default()
        },
        meta: Meta {
            handle: "h1".into(),
            created_at: Some(100),
            ip: Some("10.0.0.1".into()),
            user_agent: Some("curl/8".into()),
            provider: Some("default".into()),
            sid: Some("sid-1".into()),
        },
        tokens: TokenSet {
            access_token: Token::new("ACCESS-SECRET".into()),
            refresh_token: Some(Token::new("REFRESH-SECRET".into())),
            id_token: Some(Token::new("ID-SECRET".into())),
            expires_at: Some(5000),
            scopes: vec!["openid".into()],
        },
    }
}

fn key() -> [u8; KEY_LEN] {
    [7u8; KEY_LEN]
}

#[test]
fn a_record_round_trips_and_hides_its_tokens() {
    let text = encode(&session(), "id1", Some(&key())).expect("encodes");
    for secret in ["ACCESS-SECRET", "REFRESH-SECRET", "ID-SECRET"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.starts_with(r#"{"v":2,"#), "{text}");
    let back = decode(text.as_bytes(), "id1", Some(&key())).expect("decodes");
    assert_eq!(back.identity, session().identity);
    assert_eq!(back.meta, session().meta);
    assert_eq!(back.tokens.access_token.expose(), "ACCESS-SECRET");
    let view = view(text.as_bytes()).expect("view");
    assert_eq!(view.subject, "ann");
    assert_eq!(view.groups, ["staff", "admins"]);
    assert_eq!(view.expires_at, Some(5000));
    assert!(view.refreshable);
    assert!(
        matches!(view.subject, Cow::Borrowed(_)),
        "borrowed, not copied"
    );
}

#[test]
fn tokens_open_only_with_the_right_key_and_id() {
    let text = encode(&session(), "id1", Some(&key())).expect("encodes");
    let wrong = [8u8; KEY_LEN];
    assert_eq!(
        decode(text.as_bytes(), "id1", Some(&wrong)).err(),
        Some(RecordError::Sealed)
    );
    // The same record moved under another id does not open either.
    assert_eq!(
        decode(text.as_bytes(), "id2", Some(&key())).err(),
        Some(RecordError::Sealed)
    );
    assert_eq!(
        decode(text.as_bytes(), "id1", None).err(),
        Some(RecordError::Sealed)
    );
}

#[test]
fn format_1_records_are_read() {
    // Exactly what the previous release wrote: actix-session's map of JSON strings.
    let identity = r#"{"subject":"bob","email":"bob@example.com","email_verified":true,"name":"Bob","preferred_username":"bob"}"#;
    let tokens = r#"{"access_token":"AT","refresh_token":null,"id_token":"IT","expires_at":77,"scopes":["openid"]}"#;
    let text = serde_json::json!({"identity": identity, "tokens": tokens}).to_string();
    let s = decode(text.as_bytes(), "old", None).expect("format 1");
    assert_eq!(s.identity.subject, "bob");
    assert_eq!(s.tokens.access_token.expose(), "AT");
    let v = view(text.as_bytes()).expect("view");
    assert_eq!(v.subject, "bob");
    assert_eq!(v.expires_at, Some(77));
    assert!(!v.refreshable);
    assert_eq!(v.created_at, None);
}

#[test]
fn errors_never_quote_the_record() {
    let text = r#"{"identity": "{\"subject\": \"PII-VALUE\", oops"}"#;
    let err = decode(text.as_bytes(), "x", None).expect_err("corrupt");
    assert!(!err.to_string().contains("PII-VALUE"), "{err}");
    let err = view(br#"{"v":2,"sub":12345678}"#).expect_err("corrupt");
    assert!(!err.to_string().contains("12345678"), "{err}");
    assert_eq!(
        view(br#"{"v":9,"sub":"a","handle":"h"}"#).err(),
        Some(RecordError::Format(9))
    );
}

#[test]
fn session_keys_parse_both_formats() {
    let minted = SessionKey::mint();
    let k = SessionKey::parse(&minted).expect("minted parses");
    assert!(k.key.is_some());
    assert_eq!(k.id.len(), 43);
    let old = crate::random::token();
    let k = SessionKey::parse(&old).expect("format 1 parses");
    assert!(k.key.is_none());
    assert!(SessionKey::parse("short").is_none());
    assert!(SessionKey::parse(&format!("{old}.AAAA")).is_none());
    assert!(SessionKey::parse(&format!("{old}/x")).is_none());
}
