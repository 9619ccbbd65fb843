//! Back-channel logout tokens from the real development provider verify, name the session the
//! ID token named, and are single use across instances (Redis). The forged ones are refused in
//! src/oauth/logout_token_tests.rs; the POST /backchannel-logout route has its own tests.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use gatehouse::oauth::jwks::KeySet;
use gatehouse::oauth::logout_token::{self, Expectations, JtiRegistry, LogoutTokenError};
use gatehouse::store::logout_jti::LogoutJtis;
use gatehouse::store::RedisStore;

use crate::helpers::*;

const BCL_CLIENT: &str = "gatehouse-bcl";

/// Answers POSTs with 200 and hands each body over; what the provider's back-channel call hits.
fn receiver() -> (u16, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().ok();
                    }
                }
                line.clear();
            }
            let Some(body) = read_body(&mut reader, length) else {
                continue;
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

/// A body of `length` bytes, or chunked (Node's fetch sends a form body chunked).
fn read_body(reader: &mut impl BufRead, length: Option<usize>) -> Option<Vec<u8>> {
    if let Some(length) = length {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        return Some(body);
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// An instance's connection to Redis under `prefix` (instances of one deployment share it).
fn redis_store(prefix: &str) -> RedisStore {
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__REDIS__KEY_PREFIX".into(), prefix.to_owned());
    let settings = load(vars).expect("settings");
    RedisStore::connect(&settings.redis).expect("redis settings")
}

/// Signs `login` in at `idp` as the back-channel client; returns the ID token.
async fn sign_in_at_provider(idp: &Idp, browser: &reqwest::Client, login: &str) -> String {
    let verifier = gatehouse::random::token();
    let challenge =
        b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let redirect = format!("{PUBLIC_URL}/redirect");
    let mut authorize = url::Url::parse(&format!("{}/auth", idp.issuer)).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", BCL_CLIENT)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid email")
        .append_pair("state", "state-0123456789")
        .append_pair("nonce", "nonce-0123456789")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp_login_to(browser, authorize.as_str(), login, &redirect).await;
    let code = query_param(&callback, "code").expect("a code");
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(BCL_CLIENT, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("token JSON");
    tokens["id_token"].as_str().expect("an ID token").to_owned()
}

/// Ends the browser's session at the provider (its logout page, then "Yes, sign me out").
pub(crate) async fn end_session_at_provider(idp: &Idp, browser: &reqwest::Client) {
    let page = browser
        .get(format!("{}/session/end", idp.issuer))
        .send()
        .await
        .expect("logout page")
        .text()
        .await
        .expect("page");
    let xsrf = page
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in the logout page: {page}"))
        .to_owned();
    let res = browser
        .post(format!("{}/session/end/confirm", idp.issuer))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .expect("logout confirmed");
    assert!(res.status().is_redirection(), "{}", res.status());
}

#[tokio::test]
async fn the_development_providers_logout_token_verifies_and_names_the_signed_in_session() {
    let (port, bodies) = receiver();
    let idp = spawn_idp(&[(
        "IDP_BACKCHANNEL_URI",
        format!("http://127.0.0.1:{port}/backchannel-logout"),
    )]);
    let browser = browser();
    let id_token = sign_in_at_provider(&idp, &browser, "zed").await;
    let sid = claims_of(&id_token)["sid"]
        .as_str()
        .expect("the back-channel client's ID tokens carry sid")
        .to_owned();

    end_session_at_provider(&idp, &browser).await;
    let body = bodies
        .recv_timeout(Duration::from_secs(30))
        .expect("the provider called the back-channel URI");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token form field");

    let keys = KeySet::new(
        url::Url::parse(&format!("{}/jwks", idp.issuer)).expect("url"),
        oauth2::reqwest::Client::new(),
    );
    let expect = Expectations {
        issuer: &idp.issuer,
        client_id: BCL_CLIENT,
        now: gatehouse::identity::now_unix(),
    };
    let prefix = unique_prefix();
    let jtis = LogoutJtis::new(redis_store(&prefix));
    let target = logout_token::verify(&token, &keys, &expect, &jtis)
        .await
        .expect("the provider's logout token verifies");
    assert_eq!(target.sub.as_deref(), Some("zed"));
    assert_eq!(target.sid.as_deref(), Some(sid.as_str()));

    // Single use, also through another instance's connection.
    let other_instance = LogoutJtis::new(redis_store(&prefix));
    assert_eq!(
        logout_token::verify(&token, &keys, &expect, &other_instance).await,
        Err(LogoutTokenError::Replayed)
    );
    // For another client it is not ours.
    let not_ours = Expectations {
        client_id: CLIENT_ID,
        ..expect
    };
    assert_eq!(
        logout_token::verify(&token, &keys, &not_ours, &jtis).await,
        Err(LogoutTokenError::Audience)
    );

    // The same through a provider configured as gatehouse would be (issuer, discovery, client
    // id): a fresh registry accepts it, its second use is refused.
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), idp.issuer.clone());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__CLIENT_ID".into(), BCL_CLIENT.into());
    let settings = load(vars).expect("settings");
    let provider = gatehouse::oauth::Provider::build(settings.provider, &settings.server)
        .await
        .expect("discovery");
    let fresh = LogoutJtis::new(redis_store(&unique_prefix()));
    let target = logout_token::verify_for(&provider, &token, &fresh)
        .await
        .expect("verifies through the provider");
    assert_eq!(target.sid.as_deref(), Some(sid.as_str()));
    assert_eq!(
        logout_token::verify_for(&provider, &token, &fresh).await,
        Err(LogoutTokenError::Replayed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jti_is_first_used_exactly_once_across_instances() {
    let prefix = unique_prefix();
    let instances = [
        LogoutJtis::new(redis_store(&prefix)),
        LogoutJtis::new(redis_store(&prefix)),
    ];
    let jti = gatehouse::random::token();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10 {
        let jtis = instances[i % 2].clone();
        let jti = jti.clone();
        calls.spawn(async move {
            jtis.first_use("https://idp.example", &jti, Duration::from_secs(60))
                .await
        });
    }
    let firsts = calls
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("redis answers"))
        .filter(|first| *first)
        .count();
    assert_eq!(firsts, 1);
    // The same jti from another issuer is another token.
    assert_eq!(
        instances[0]
            .first_use("https://other.example", &jti, Duration::from_secs(60))
            .await,
        Ok(true)
    );
}
