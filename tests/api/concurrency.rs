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
async fn tabs_racing_on_a_first_visit_get_a_clear_start_again_answer() {
    // No binding cookie yet: five tabs' /signin requests all leave before any answer is back,
    // so each mints a binding cookie, and the browser keeps the last one of each name (as a
    // real one does). Sign-ins bound to a cookie the browser no longer holds must fail
    // clearly (and safely), never sign in silently; the one whose cookie survived succeeds.
    // (When every sign-in gets a binding of its own, issue 12 point 1, this becomes 5 of 5.)
    let app = Arc::new(spawn_app_with_idp(&[]).await);
    let mut starts = JoinSet::new();
    for tab in 0..5 {
        let app = app.clone();
        starts.spawn(async move {
            // Cookie-less, like every tab of a browser that has no cookie yet.
            let res = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .get(app.url("/signin"))
                .send()
                .await
                .expect("signin");
            assert_eq!(res.status().as_u16(), 303);
            let set_cookies: Vec<String> = res
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            (tab, location(&res), set_cookies)
        });
    }
    let mut started = Vec::new();
    while let Some(done) = starts.join_next().await {
        started.push(done.expect("start"));
    }
    started.sort_by_key(|(tab, _, _)| *tab);
    // The answers reach the browser in tab order: the last tab's cookies win.
    let (client, jar) = browser_with_jar();
    let origin = reqwest::Url::parse(&app.address).expect("url");
    for (_, _, set_cookies) in &started {
        assert!(
            !set_cookies.is_empty(),
            "a first visit gets a binding cookie"
        );
        for c in set_cookies {
            jar.add_cookie_str(c, &origin);
        }
    }
    let mut signed_in = Vec::new();
    for (tab, authorize, _) in &started {
        let cb = idp_login(&client, authorize, "frank").await;
        let mut target = reqwest::Url::parse(&app.url("/redirect")).expect("url");
        target.set_query(reqwest::Url::parse(&cb).expect("cb").query());
        let res = client
            .get(target)
            .header("accept", "text/html")
            .send()
            .await
            .expect("callback");
        match res.status().as_u16() {
            303 => signed_in.push(*tab),
            400 => {
                let page = res.text().await.expect("page");
                assert!(page.contains("Sign in again"), "{page}");
                assert!(page.contains("invalid_state"), "{page}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        signed_in,
        vec![4],
        "exactly the tab whose binding cookie the browser kept signs in"
    );
}
