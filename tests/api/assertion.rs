//! The signed identity assertion (`FORWARD__ASSERTION`) and `/.well-known/jwks.json`, through
//! HTTP only: signed in at the real development provider, verified with verifiers that share
//! nothing with gatehouse's signing code (jsonwebtoken, and the docs' Node.js `jose` example).

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::helpers::*;

const ASSERTION: &str = "x-auth-request-assertion";

async fn jwks(app: &TestApp) -> Value {
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.expect("a JSON key set")
}

/// The payload when `token` verifies with the key its `kid` names in `jwks` (EdDSA only), for
/// `aud`; `Err` with why not.
fn verify(jwks: &Value, token: &str, aud: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or("kid not in the set")?;
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().ok_or("no x")?)
        .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[PUBLIC_URL]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

/// `/auth` with the app's cookie, as a trusted proxy asking about `origin` (`(proto, host)`).
async fn auth_from_proxy(app: &TestApp, origin: Option<(&str, &str)>) -> reqwest::Response {
    let mut req = app.client.get(app.url("/auth"));
    if let Some((proto, host)) = origin {
        req = req
            .header("x-forwarded-proto", proto)
            .header("x-forwarded-host", host)
            .header("x-forwarded-uri", "/page");
    }
    let res = req.send().await.expect("auth answered");
    assert_eq!(res.status().as_u16(), 200, "signed in");
    res
}

fn assertion_of(res: &reqwest::Response) -> String {
    res.headers()
        .get(ASSERTION)
        .and_then(|v| v.to_str().ok())
        .expect("an assertion")
        .to_owned()
}

async fn signed_in(overrides: &[(&str, &str)], login: &str) -> TestApp {
    let mut vars = vec![
        ("GATEHOUSE__FORWARD__ASSERTION", "true"),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
    ];
    vars.extend_from_slice(overrides);
    let app = spawn_app_with_idp(&vars).await;
    let res = app.sign_in(&app.client, login, None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in");
    app
}

#[tokio::test]
async fn the_key_set_is_public_cacheable_and_holds_only_public_keys() {
    let app = spawn_app().await;
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status().as_u16(), 200);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("cache-control"), "public, max-age=300");
    assert!(
        header("content-type").starts_with("application/jwk-set+json"),
        "{}",
        header("content-type")
    );
    assert!(
        res.headers().get("set-cookie").is_none(),
        "touches no session"
    );
    let set: Value = res.json().await.expect("json");
    let keys = set["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{set}");
    let key = &keys[0];
    for (member, value) in [
        ("kty", "OKP"),
        ("crv", "Ed25519"),
        ("use", "sig"),
        ("alg", "EdDSA"),
    ] {
        assert_eq!(key[member], value, "{member} in {key}");
    }
    assert!(key["kid"].as_str().is_some_and(|k| k.len() == 43), "{key}");
    assert!(key["x"].as_str().is_some_and(|x| x.len() == 43), "{key}");
    assert!(key.get("d").is_none(), "never the private key: {key}");
    let post = app
        .client
        .post(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("answered");
    assert_json_error(post, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn the_assertion_verifies_and_says_who_for_which_origin() {
    let app = signed_in(&[], "ann+admins").await;
    let set = jwks(&app).await;

    let res = auth_from_proxy(&app, Some(("https", "App.Example.com:8443"))).await;
    let token = assertion_of(&res);
    let claims = verify(&set, &token, "https://app.example.com:8443").expect("verifies");
    assert_eq!(claims["iss"], PUBLIC_URL);
    assert_eq!(claims["sub"], "ann+admins");
    assert_eq!(claims["email"], "ann+admins@example.com");
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(120), "{claims}");
    let now = gatehouse::identity::now_unix();
    assert!(iat.is_some_and(|i| i <= now && i + 5 >= now), "{claims}");
    // The groups the headers carry are the groups the assertion carries.
    let groups_header = res
        .headers()
        .get("x-auth-request-groups")
        .and_then(|v| v.to_str().ok())
        .map(|g| g.split(',').map(|s| Value::from(s.to_owned())).collect())
        .unwrap_or_default();
    assert_eq!(claims["groups"], Value::Array(groups_header), "{claims}");
    assert!(
        verify(&set, &token, "https://other.example.com").is_err(),
        "made for one origin only"
    );
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);

    // Without forwarded headers: PUBLIC_URL's origin.
    let direct = assertion_of(&auth_from_proxy(&app, None).await);
    assert!(verify(&set, &direct, PUBLIC_URL).is_ok());
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_the_audience() {
    let app = spawn_app_with_idp(&[("GATEHOUSE__FORWARD__ASSERTION", "true")]).await;
    let res = app.sign_in(&app.client, "bob", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let token = assertion_of(&auth_from_proxy(&app, Some(("https", "evil.example"))).await);
    let set = jwks(&app).await;
    assert!(verify(&set, &token, PUBLIC_URL).is_ok());
    assert!(verify(&set, &token, "https://evil.example").is_err());
}

#[tokio::test]
async fn an_unverified_email_is_left_out() {
    let app = signed_in(&[], "carol+unverified").await;
    let token = assertion_of(&auth_from_proxy(&app, None).await);
    let claims = verify(&jwks(&app).await, &token, PUBLIC_URL).expect("verifies");
    assert_eq!(claims["sub"], "carol+unverified");
    assert!(claims.get("email").is_none(), "{claims}");
}

#[tokio::test]
async fn off_by_default() {
    let app = spawn_app_with_idp(&[]).await;
    let res = app.sign_in(&app.client, "dave", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let res = auth_from_proxy(&app, None).await;
    assert!(res.headers().get(ASSERTION).is_none());
}

#[tokio::test]
async fn one_assertion_is_reused_within_its_window_per_origin() {
    let app = signed_in(&[], "erin").await;
    let origin = Some(("https", "app.example.com"));
    let first = assertion_of(&auth_from_proxy(&app, origin).await);
    let second = assertion_of(&auth_from_proxy(&app, origin).await);
    assert_eq!(first, second, "not signed again");
    let other = assertion_of(&auth_from_proxy(&app, Some(("https", "b.example.com"))).await);
    assert_ne!(first, other, "another origin, another assertion");
    let set = jwks(&app).await;
    assert!(verify(&set, &other, "https://b.example.com").is_ok());
}

#[tokio::test]
async fn a_new_assertion_is_signed_when_a_quarter_of_its_life_is_left() {
    // Four seconds: reused for three, then signed again.
    let app = signed_in(&[("GATEHOUSE__FORWARD__ASSERTION_TTL_SECS", "4")], "frank").await;
    let set = jwks(&app).await;
    let first = assertion_of(&auth_from_proxy(&app, None).await);
    let first_iat = verify(&set, &first, PUBLIC_URL).expect("verifies")["iat"]
        .as_u64()
        .expect("iat");
    let deadline = Instant::now() + Duration::from_secs(15);
    let renewed = loop {
        let current = assertion_of(&auth_from_proxy(&app, None).await);
        if current != first {
            break current;
        }
        assert!(Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let claims = verify(&set, &renewed, PUBLIC_URL).expect("verifies");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(
        iat >= first_iat + 3,
        "reused for 3 of 4 s: {first_iat} then {iat}"
    );
    assert_eq!(claims["exp"].as_u64(), Some(iat + 4));
}

#[tokio::test]
async fn instances_sharing_the_secret_verify_each_other() {
    let secret = session_secret();
    let prefix = unique_prefix();
    let shared = [
        ("GATEHOUSE__SESSION__SECRET", secret.as_str()),
        ("GATEHOUSE__REDIS__KEY_PREFIX", prefix.as_str()),
        ("GATEHOUSE__FORWARD__ASSERTION", "true"),
    ];
    let a = spawn_app_with_idp(&shared).await;
    let b = spawn_app_with_idp(&shared).await;
    let res = a.sign_in(&a.client, "gina", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let (set_a, set_b) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(set_a, set_b, "one key set");
    let from_a = assertion_of(&auth_from_proxy(&a, None).await);
    // The same session cookie, asked of the other instance.
    let res = reqwest::Client::new()
        .get(b.url("/auth"))
        .header("cookie", a.cookie_header())
        .send()
        .await
        .expect("auth answered");
    assert_eq!(res.status().as_u16(), 200);
    let from_b = assertion_of(&res);
    assert_eq!(
        verify(&set_b, &from_a, PUBLIC_URL).expect("b verifies a's")["sub"],
        "gina"
    );
    assert_eq!(
        verify(&set_a, &from_b, PUBLIC_URL).expect("a verifies b's")["sub"],
        "gina"
    );

    let other = spawn_app_with_idp(&[("GATEHOUSE__FORWARD__ASSERTION", "true")]).await;
    assert!(
        verify(&jwks(&other).await, &from_a, PUBLIC_URL).is_err(),
        "another secret, another key"
    );
}

#[tokio::test]
async fn after_a_rotation_the_old_instances_assertions_still_verify() {
    let old_secret = session_secret();
    let prefix = unique_prefix();
    let old = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", old_secret.as_str()),
        ("GATEHOUSE__REDIS__KEY_PREFIX", prefix.as_str()),
        ("GATEHOUSE__FORWARD__ASSERTION", "true"),
    ])
    .await;
    let new_secret = session_secret();
    let new = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", new_secret.as_str()),
        ("GATEHOUSE__SESSION__PREVIOUS_SECRETS", old_secret.as_str()),
        ("GATEHOUSE__REDIS__KEY_PREFIX", prefix.as_str()),
        ("GATEHOUSE__FORWARD__ASSERTION", "true"),
    ])
    .await;
    let res = old.sign_in(&old.client, "hank", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let from_old = assertion_of(&auth_from_proxy(&old, None).await);

    let old_set = jwks(&old).await;
    let new_set = jwks(&new).await;
    let kids = |set: &Value| -> Vec<String> {
        set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect()
    };
    let (old_kids, new_kids) = (kids(&old_set), kids(&new_set));
    assert_eq!(new_kids.len(), 2, "the new key and the previous one");
    assert_eq!(new_kids[1], old_kids[0]);
    assert_ne!(new_kids[0], old_kids[0]);
    assert_eq!(
        verify(&new_set, &from_old, PUBLIC_URL).expect("verifies")["sub"],
        "hank"
    );
    // And the new instance signs with the new key.
    let res = reqwest::Client::new()
        .get(new.url("/auth"))
        .header("cookie", old.cookie_header())
        .send()
        .await
        .expect("auth answered");
    assert_eq!(res.status().as_u16(), 200, "the old cookie still works");
    let from_new = assertion_of(&res);
    let kid = jsonwebtoken::decode_header(&from_new).expect("header").kid;
    assert_eq!(kid.as_deref(), Some(new_kids[0].as_str()));
    assert!(verify(&old_set, &from_new, PUBLIC_URL).is_err());
}

/// The docs' Node.js example, run as written (but for the URLs) with `jose` from the
/// development provider's packages.
#[tokio::test]
async fn the_documented_node_example_verifies_a_real_assertion() {
    let app = signed_in(&[], "ivy+ops").await;
    let token = assertion_of(&auth_from_proxy(&app, Some(("https", "app.example.com"))).await);

    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/authorization.md"
    ))
    .expect("docs/authorization.md");
    let section = docs
        .split("## The signed assertion")
        .nth(1)
        .expect("the assertion section");
    let example = section
        .split("```js\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a js example");
    let mut script = example.to_owned();
    for (written, here) in [
        ("'https://auth.example.com'", format!("'{PUBLIC_URL}'")),
        (
            "`${GATEHOUSE}/.well-known/jwks.json`",
            format!("'{}'", app.url("/.well-known/jwks.json")),
        ),
    ] {
        assert!(script.contains(written), "the example has {written}");
        script = script.replace(written, &here);
    }
    script.push_str(
        "\nconst who = await user({ 'x-auth-request-assertion': process.argv[2] })\n\
         \x20 .catch((e) => ({ refused: e.code ?? e.message }));\n\
         console.log(JSON.stringify(who));\n",
    );

    let dir = TempDir::new();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/node_modules"),
        dir.path.join("node_modules"),
    )
    .expect("node_modules linked");
    let file = dir.write("verify.mjs", &script);
    let run = |token: String| {
        let file = file.clone();
        async move {
            let out = tokio::process::Command::new("node")
                .arg(&file)
                .arg(token)
                .output()
                .await
                .expect("node runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).expect("JSON line")
        }
    };
    let who = run(token.clone()).await;
    assert_eq!(who["subject"], "ivy+ops", "{who}");
    assert_eq!(who["email"], "ivy+ops@example.com", "{who}");
    assert!(who["groups"].is_array(), "{who}");

    // One flipped character in the payload: refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    let refused = run(parts.join(".")).await;
    assert!(refused.get("refused").is_some(), "{refused}");
    // Another origin's assertion: refused by the audience check.
    let elsewhere = assertion_of(&auth_from_proxy(&app, Some(("https", "b.example.com"))).await);
    let refused = run(elsewhere).await;
    assert_eq!(
        refused["refused"], "ERR_JWT_CLAIM_VALIDATION_FAILED",
        "{refused}"
    );
}

#[test]
fn the_lifetime_is_one_second_to_ten_minutes() {
    for bad in ["0", "601", "-5", "two"] {
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__FORWARD__ASSERTION_TTL_SECS".into(), bad.into());
        let err = load(vars).expect_err("refused");
        assert!(
            err.0.contains("GATEHOUSE__FORWARD__ASSERTION_TTL_SECS"),
            "{bad}: {}",
            err.0
        );
    }
    for good in ["1", "600"] {
        let mut vars = base_vars();
        vars.insert("GATEHOUSE__FORWARD__ASSERTION_TTL_SECS".into(), good.into());
        let settings = load(vars).expect("accepted");
        assert_eq!(settings.forward.assertion_ttl.as_secs().to_string(), good);
    }
}
