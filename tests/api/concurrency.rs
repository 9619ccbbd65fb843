//! Many tabs, many browsers, replays and two instances, against the real provider and Redis.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::helpers::*;

#[tokio::test]
async fn twenty_tabs_of_one_browser_all_complete_in_any_order() {
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    // A first sign-in gives the browser its binding cookie (and the provider its session).
    let first = app.sign_in(&app.client, "carol", None).await;
    assert_eq!(first.status().as_u16(), 303);

    let mut starts = JoinSet::new();
    for i in 0..20 {
        let app = app.clone();
        starts.spawn(async move {
            let rt = format!("/tab/{i}");
            (rt.clone(), app.start_sign_in(&app.client, Some(&rt)).await)
        });
    }
    let mut callbacks = Vec::new();
    while let Some(done) = starts.join_next().await {
        let (rt, authorize) = done.expect("start task");
        callbacks.push((rt, idp_login(&app.client, &authorize, "carol").await));
    }
    // Finish them in the reverse of the order they came back in.
    callbacks.reverse();
    let mut finishes = JoinSet::new();
    for (rt, cb) in callbacks {
        let app = app.clone();
        finishes.spawn(async move {
            let res = app.follow_callback(&app.client, &cb).await;
            (rt, res.status().as_u16(), location(&res))
        });
    }
    let mut ok = 0;
    while let Some(done) = finishes.join_next().await {
        let (rt, status, loc) = done.expect("finish task");
        assert_eq!(status, 303, "tab {rt} failed");
        assert_eq!(loc, rt, "each tab returns to its own page");
        ok += 1;
    }
    assert_eq!(ok, 20);
    assert_eq!(
        app.get("/auth").await.headers()["x-auth-request-user"],
        "carol"
    );
}

#[tokio::test]
async fn a_hundred_browsers_at_once_each_get_their_own_identity() {
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.spawn(async move {
            let (client, jar) = browser_with_jar();
            let login = format!("user{i}");
            let res = app.sign_in(&client, &login, None).await;
            assert_eq!(res.status().as_u16(), 303, "{login}");
            let session: serde_json::Value = client
                .get(app.url("/session"))
                .send()
                .await
                .expect("session")
                .json()
                .await
                .expect("json");
            let _ = jar;
            (
                login,
                session["subject"].as_str().unwrap_or_default().to_owned(),
            )
        });
    }
    let mut seen = 0;
    while let Some(done) = tasks.join_next().await {
        let (login, subject) = done.expect("browser task");
        assert_eq!(subject, login);
        seen += 1;
    }
    assert_eq!(seen, 100);
    assert_eq!(
        app.keys("session").await.len(),
        100,
        "one session per browser"
    );
}

#[tokio::test]
async fn concurrent_replays_of_one_callback_succeed_exactly_once() {
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "dave").await;
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let app = app.clone();
        let cb = callback.clone();
        tasks.spawn(async move {
            let res = app.follow_callback(&app.client, &cb).await;
            let status = res.status().as_u16();
            let body: serde_json::Value = if status == 303 {
                serde_json::Value::Null
            } else {
                res.json().await.expect("json error")
            };
            (status, body)
        });
    }
    let mut successes = 0;
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.expect("replay task");
        if status == 303 {
            successes += 1;
        } else {
            assert_eq!(status, 400);
            assert_eq!(body["error"], "invalid_state");
        }
    }
    assert_eq!(successes, 1, "exactly one replay wins");
}

#[tokio::test]
async fn concurrent_replays_of_one_callback_across_two_instances_succeed_exactly_once() {
    let a = Arc::new(spawn_app_with_idp(&[]).await);
    let secret = a.vars["GATEHOUSE__SESSION__SECRET"].clone();
    let b = Arc::new(
        spawn_app_with_idp(&[
            ("GATEHOUSE__SESSION__SECRET", &secret),
            ("GATEHOUSE__REDIS__KEY_PREFIX", &a.prefix),
        ])
        .await,
    );
    // One browser (its binding cookie is valid on both instances) replays its own callback
    // ten times at once, half on each instance.
    let authorize = a.start_sign_in(&a.client, Some("/once")).await;
    let callback = idp_login(&a.client, &authorize, "ivan").await;
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let browser = a.client.clone();
        let cb = callback.clone();
        tasks.spawn(async move {
            let res = app.follow_callback(&browser, &cb).await;
            let status = res.status().as_u16();
            let to = location(&res);
            let body: serde_json::Value = if status == 303 {
                serde_json::Value::Null
            } else {
                res.json().await.expect("json error")
            };
            (i % 2, status, to, body)
        });
    }
    let (mut wins, mut refused) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (instance, status, to, body) = done.expect("replay task");
        match status {
            303 => {
                assert_eq!(to, "/once");
                wins.push(instance);
            }
            400 => {
                assert_eq!(body["error"], "invalid_state", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one replay wins, on either instance");
    assert_eq!(refused, 9);
    // One session, valid on both instances.
    for app in [&a, &b] {
        let res = a.client.get(app.url("/auth")).send().await.expect("auth");
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["x-auth-request-user"], "ivan");
    }
}

#[tokio::test]
async fn two_instances_share_sign_ins_and_sessions() {
    let a = spawn_app_with_idp(&[]).await;
    let secret = a.vars["GATEHOUSE__SESSION__SECRET"].clone();
    let b = spawn_app_with_idp(&[
        ("GATEHOUSE__SESSION__SECRET", &secret),
        ("GATEHOUSE__REDIS__KEY_PREFIX", &a.prefix),
    ])
    .await;
    // One browser: a's client (its jar is keyed by host, and both listen on 127.0.0.1).
    let browser = &a.client;
    let authorize = a.start_sign_in(browser, Some("/from-a")).await;
    let callback = idp_login(browser, &authorize, "erin").await;
    let done = b.follow_callback(browser, &callback).await;
    assert_eq!(done.status().as_u16(), 303, "started on A, finished on B");
    assert_eq!(location(&done), "/from-a");
    for app in [&a, &b] {
        let res = browser.get(app.url("/auth")).send().await.expect("auth");
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["x-auth-request-user"], "erin");
    }
    let out = browser
        .post(b.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303);
    let res = browser.get(a.url("/auth")).send().await.expect("auth");
    assert_eq!(
        res.status().as_u16(),
        401,
        "signed out on B means signed out on A"
    );
}

#[tokio::test]
async fn eight_tabs_racing_on_a_first_visit_all_sign_in_whatever_the_order() {
    // A browser with no gatehouse cookie yet (first visit, or tabs restored after the session
    // ended) sends eight /signin at once: every answer comes back before the browser stores
    // any cookie, and it keeps only the last cookie of each name. Reproduced deterministically:
    // the requests go out cookie-less, then their cookies go into one jar, in arrival order.
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    let (client, jar) = browser_with_jar();
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut starts = JoinSet::new();
    for i in 0..8 {
        let (app, bare) = (app.clone(), bare.clone());
        starts.spawn(async move {
            let rt = format!("/tab/{i}");
            let res = bare
                .get(app.url(&format!("/signin?return_to={rt}")))
                .send()
                .await
                .expect("signin");
            assert_eq!(res.status().as_u16(), 303);
            let cookies: Vec<String> = res
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            (rt, location(&res), cookies)
        });
    }
    let origin = reqwest::Url::parse(&app.address).expect("url");
    let mut tabs = Vec::new();
    while let Some(done) = starts.join_next().await {
        let (rt, authorize, cookies) = done.expect("start task");
        for cookie in &cookies {
            jar.add_cookie_str(cookie, &origin);
        }
        tabs.push((rt, authorize));
    }
    let bound = tabs.len();
    let mut callbacks = Vec::new();
    for (rt, authorize) in tabs {
        callbacks.push((rt, idp_login(&client, &authorize, "frank").await));
    }
    // The tab whose answer arrived last finishes first, the first one last; in between, two
    // at once.
    callbacks.reverse();
    let mut finished = 0;
    for pair in callbacks.chunks(2) {
        let mut finishes = JoinSet::new();
        for (rt, cb) in pair.iter().cloned() {
            let (app, client) = (app.clone(), client.clone());
            finishes.spawn(async move {
                let res = app.follow_callback(&client, &cb).await;
                let status = res.status().as_u16();
                let loc = location(&res);
                let body = res.text().await.unwrap_or_default();
                (rt, status, loc, body)
            });
        }
        while let Some(done) = finishes.join_next().await {
            let (rt, status, loc, body) = done.expect("finish task");
            assert_eq!(status, 303, "tab {rt} failed: {body}");
            assert_eq!(loc, rt, "each tab returns to its own page");
            finished += 1;
        }
    }
    assert_eq!(finished, bound);
    assert_eq!(bound, 8);
    let res = client.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "frank");
    // Each callback deleted its own binding cookie: none is left to grow the Cookie header.
    let header = app_cookie_header(&jar, &origin);
    assert!(
        !header.contains("_signin_"),
        "binding cookies left: {header}"
    );
}

#[tokio::test]
async fn eight_tabs_of_a_new_browser_at_once_all_sign_in_and_a_stolen_callback_still_fails() {
    // The same race with a real shared jar: whichever cookies each request happens to carry.
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    let (client, _jar) = browser_with_jar();
    let mut starts = JoinSet::new();
    for i in 0..9 {
        let (app, client) = (app.clone(), client.clone());
        starts.spawn(async move {
            let rt = format!("/tab/{i}");
            (rt.clone(), app.start_sign_in(&client, Some(&rt)).await)
        });
    }
    let mut tabs = Vec::new();
    while let Some(done) = starts.join_next().await {
        tabs.push(done.expect("start task"));
    }
    tabs.sort();
    // The ninth tab's callback URL is stolen: in another browser (which has a binding cookie
    // of its own) it is refused and signs nobody in.
    let (_, stolen) = tabs.pop().expect("nine tabs");
    let stolen = idp_login(&client, &stolen, "grace").await;
    let (thief, _thief_jar) = browser_with_jar();
    let _ = app.start_sign_in(&thief, None).await;
    let res = app.follow_callback(&thief, &stolen).await;
    assert_json_error(res, 400, "invalid_state").await;
    let res = thief.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(res.status().as_u16(), 401, "the thief is not signed in");

    let mut ok = 0;
    for (rt, authorize) in tabs.into_iter().rev() {
        let cb = idp_login(&client, &authorize, "grace").await;
        let res = app.follow_callback(&client, &cb).await;
        assert_eq!(res.status().as_u16(), 303, "tab {rt}");
        assert_eq!(location(&res), rt);
        ok += 1;
    }
    assert_eq!(ok, 8);
}

/// The `Cookie` header `jar` would send to `origin`.
fn app_cookie_header(jar: &reqwest::cookie::Jar, origin: &reqwest::Url) -> String {
    use reqwest::cookie::CookieStore;
    jar.cookies(origin)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}
