//! GET /sessions and POST /sessions/revoke: a user sees their own sessions and ends them, at
//! once, on every instance; never someone else's; never cross-site.

use reqwest::header::{ACCEPT, ORIGIN};

use crate::helpers::*;

/// A browser that says which device it is (the session list shows it).
fn device(name: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(name)
        .build()
        .expect("client")
}

async fn signed_in(app: &TestApp, client: &reqwest::Client, login: &str) {
    let res = app.sign_in(client, login, None).await;
    assert_eq!(res.status().as_u16(), 303, "{login} signs in");
}

async fn list(app: &TestApp, client: &reqwest::Client) -> Vec<serde_json::Value> {
    let res = client
        .get(app.url("/sessions"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("sessions");
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    body["sessions"].as_array().expect("array").clone()
}

async fn revoke(app: &TestApp, client: &reqwest::Client, form: &str) -> reqwest::Response {
    client
        .post(app.url("/sessions/revoke"))
        .header(ACCEPT, "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("revoke")
}

async fn auth(app: &TestApp, client: &reqwest::Client) -> u16 {
    client
        .get(app.url("/auth"))
        .send()
        .await
        .expect("auth")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_user_lists_their_own_sessions_by_handles_that_are_not_cookie_ids() {
    let app = spawn_app_with_idp(&[]).await;
    let (laptop, phone, other) = (device("Laptop"), device("Phone"), device("Other"));
    signed_in(&app, &laptop, "sam").await;
    signed_in(&app, &phone, "sam").await;
    signed_in(&app, &other, "tom").await;
    let sessions = list(&app, &laptop).await;
    assert_eq!(sessions.len(), 2, "sam's two, not tom's: {sessions:?}");
    let now = gatehouse::identity::now_unix();
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop");
    for s in &sessions {
        let id = s["id"].as_str().expect("id");
        let created = s["created_at"].as_u64().expect("created_at");
        let seen = s["last_seen_at"].as_u64().expect("last_seen_at");
        assert!(created <= seen && seen <= now && now - created < 120, "{s}");
        assert_eq!(s["ip"], "127.0.0.1");
        // The cookie's session id never appears.
        for key in app.keys("session").await {
            let record_id = key
                .rsplit('{')
                .next()
                .unwrap_or_default()
                .trim_end_matches('}');
            assert!(!id.contains(record_id) && !record_id.contains(id), "{id}");
        }
    }
    // The page: accessible HTML that marks this device and offers to end the others.
    let page = laptop
        .get(app.url("/sessions"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("script-src 'none'") || !csp.contains("script-src"),
        "{csp}"
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains("(this device)") && html.contains("Phone"),
        "{html}"
    );
    assert!(html.contains(r#"action="/sessions/revoke""#));
    assert!(!html.contains("<script"), "no script");
    // The home page links to it.
    let home = laptop.get(app.url("/")).send().await.expect("home");
    assert!(home
        .text()
        .await
        .expect("html")
        .contains(r#"href="/sessions""#));
}

#[tokio::test]
async fn ending_a_session_signs_that_device_out_at_once_on_every_instance() {
    let app = spawn_app_with_idp(&[]).await;
    let second = spawn_app_from_vars(app.vars.clone()).await;
    let (laptop, phone) = (device("Laptop"), device("Phone"));
    signed_in(&app, &laptop, "una").await;
    signed_in(&app, &phone, "una").await;
    assert_eq!(
        auth(&second, &phone).await,
        200,
        "the other instance knows it"
    );
    let sessions = list(&app, &laptop).await;
    let phone_id = sessions
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("the phone's session")
        .to_owned();
    let res = revoke(&app, &laptop, &format!("id={phone_id}")).await;
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(auth(&app, &phone).await, 401);
    assert_eq!(auth(&second, &phone).await, 401, "on every instance");
    assert_eq!(auth(&second, &laptop).await, 200, "the laptop stays");
    assert_eq!(list(&app, &laptop).await.len(), 1);
    // The same handle again: gone.
    assert_json_error(
        revoke(&app, &laptop, &format!("id={phone_id}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn nobody_ends_someone_elses_session() {
    let app = spawn_app_with_idp(&[]).await;
    let (vic, eve) = (device("Victim"), device("Eve"));
    signed_in(&app, &vic, "vic").await;
    signed_in(&app, &eve, "eve").await;
    let vics = list(&app, &vic).await;
    let handle = vics[0]["id"].as_str().expect("id").to_owned();
    assert_json_error(
        revoke(&app, &eve, &format!("id={handle}")).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(auth(&app, &vic).await, 200);
    assert_json_error(revoke(&app, &eve, "id=made-up").await, 404, "not_found").await;
}

#[tokio::test]
async fn revocation_is_refused_cross_site_and_needs_a_session() {
    let app = spawn_app_with_idp(&[]).await;
    let laptop = device("Laptop");
    signed_in(&app, &laptop, "wes").await;
    let res = laptop
        .post(app.url("/sessions/revoke"))
        .header(ORIGIN, "https://evil.example")
        .header(ACCEPT, "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("all_others=true")
        .send()
        .await
        .expect("post");
    assert_json_error(res, 403, "forbidden").await;
    let stranger = device("Stranger");
    assert_json_error(
        revoke(&app, &stranger, "all_others=true").await,
        401,
        "unauthorized",
    )
    .await;
    assert_json_error(
        stranger
            .get(app.url("/sessions"))
            .send()
            .await
            .expect("get"),
        401,
        "unauthorized",
    )
    .await;
    for bad in ["", "id=", "all_others=yes", "id=a&all_others=true"] {
        assert_json_error(revoke(&app, &laptop, bad).await, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn signing_out_everywhere_else_keeps_this_device() {
    let app = spawn_app_with_idp(&[]).await;
    let devices: Vec<_> = ["A", "B", "C"].iter().map(|n| device(n)).collect();
    for d in &devices {
        signed_in(&app, d, "xia").await;
    }
    // A form post from the page: 303 back to the list.
    let res = devices[0]
        .post(app.url("/sessions/revoke"))
        .header(ACCEPT, "text/html")
        .header(ORIGIN, "http://gatehouse.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("all_others=true")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(location(&res), "/sessions");
    assert_eq!(auth(&app, &devices[0]).await, 200);
    assert_eq!(auth(&app, &devices[1]).await, 401);
    assert_eq!(auth(&app, &devices[2]).await, 401);
    assert_eq!(list(&app, &devices[0]).await.len(), 1);
}

#[tokio::test]
async fn an_expired_session_is_not_listed() {
    let app = spawn_app_with_idp(&[]).await;
    let (a, b) = (device("A"), device("B"));
    signed_in(&app, &a, "yan").await;
    signed_in(&app, &b, "yan").await;
    assert_eq!(list(&app, &a).await.len(), 2);
    // B's record expires in Redis (as its idle lifetime would end it).
    let phone_listed = list(&app, &b).await;
    let b_handle = phone_listed
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("b's own")
        .to_owned();
    let mut conn = app.redis().await;
    for key in app.keys("session").await {
        let record: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        if record.contains(&b_handle) {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
    }
    let listed = list(&app, &a).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
}
