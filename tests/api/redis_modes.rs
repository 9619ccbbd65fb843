//! Redis the way production runs it, each test on `redis-server` processes of its own: TLS with
//! a generated CA, an ACL user in the URL, a 3-master Redis Cluster, and Redis killed and
//! restarted under traffic.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use crate::helpers::*;

// ---- TLS ----

/// A Redis that speaks TLS only (no plain port), with the certificate `tls` names.
async fn tls_redis(tls: &TlsFiles) -> RedisServer {
    let (cert, key, ca) = (tls.cert.clone(), tls.key.clone(), tls.ca.clone());
    let server = RedisServer::start(move |port| {
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            cert.clone(),
            "--tls-key-file".into(),
            key.clone(),
            "--tls-ca-cert-file".into(),
            ca.clone(),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    })
    .await;
    let cli = ["--tls", "--cacert", tls.ca.as_str()];
    server.with_cli_options(&cli)
}

#[tokio::test]
async fn rediss_with_the_configured_ca_signs_a_user_in() {
    let files = TempDir::new();
    let tls = make_tls_files(&files);
    let redis = tls_redis(&tls).await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__URL", &url),
        ("GATEHOUSE__REDIS__CA_FILE", &tls.ca),
    ])
    .await;

    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    let res = app.sign_in(&app.client, "tess", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in over TLS");
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "tess");

    // The session is in that Redis, which only listens for TLS.
    let keys = redis
        .cli(&["--scan", "--pattern", &format!("{}session:*", app.prefix)])
        .await;
    assert_eq!(keys.lines().count(), 1, "one session stored: {keys:?}");
}

#[tokio::test]
async fn rediss_whose_certificate_is_not_trusted_is_not_ready() {
    let files = TempDir::new();
    let tls = make_tls_files(&files);
    let other_ca = make_ca(&files, "other-ca");
    let redis = tls_redis(&tls).await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);

    // System roots (no CA file), then a CA that did not sign the server's certificate.
    for ca in [None, Some(other_ca.as_str())] {
        let mut vars = vec![("GATEHOUSE__REDIS__URL", url.as_str())];
        if let Some(ca) = ca {
            vars.push(("GATEHOUSE__REDIS__CA_FILE", ca));
        }
        let app = spawn_app_with_idp(&vars).await;
        for path in ["/readyz", "/signin"] {
            // Answered (not hung until the client's 30 s give-up) with a 503: this Redis
            // never becomes usable, so only a fail-closed answer can come.
            let res = app.get(path).await;
            assert!(
                res.headers().get("location").is_none(),
                "{path} with {ca:?}"
            );
            assert_json_error(res, 503, "store_unavailable").await;
        }
    }
}

#[tokio::test]
async fn a_ca_file_with_a_plain_redis_url_stops_start_up() {
    let files = TempDir::new();
    let ca = make_ca(&files, "ca");
    let settings = load(
        base_vars()
            .into_iter()
            .chain([("GATEHOUSE__REDIS__CA_FILE".to_owned(), ca)])
            .collect(),
    )
    .expect("the settings themselves are valid");
    let Err(e) = gatehouse::startup::Application::build(settings).await else {
        panic!("a CA file for a plain redis:// URL must be refused");
    };
    let text = e.to_string();
    assert!(
        text.contains("GATEHOUSE__REDIS__CA_FILE") && text.contains("rediss://"),
        "{text}"
    );
}

// ---- ACL user ----

const ACL_USER: &str = "gate";
const ACL_PASSWORD: &str = "s3cret-Gate-Pa55";

/// A Redis whose default user is off: only `gate` (with ACL_PASSWORD) may do anything.
async fn acl_redis() -> RedisServer {
    let server = RedisServer::start(|port| {
        [
            "--port",
            &port.to_string(),
            "--user",
            "default",
            "off",
            "--user",
            ACL_USER,
            "on",
            &format!(">{ACL_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    })
    .await;
    server.with_cli_options(&[
        "--no-auth-warning",
        "--user",
        ACL_USER,
        "--pass",
        ACL_PASSWORD,
    ])
}

#[tokio::test]
async fn an_acl_user_in_the_url_signs_a_user_in() {
    let redis = acl_redis().await;
    // Without credentials this Redis refuses everything.
    let anonymous = redis_cli(redis.port, &[], &["PING"]).await;
    assert!(anonymous.contains("NOAUTH"), "{anonymous}");

    let url = format!("redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{}", redis.port);
    let app = spawn_app_with_idp(&[("GATEHOUSE__REDIS__URL", &url)]).await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    let res = app.sign_in(&app.client, "gwen", None).await;
    assert_eq!(res.status().as_u16(), 303, "signed in through the ACL user");
    let res = app.get("/auth").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-auth-request-user"], "gwen");

    // gatehouse's connection is authenticated as that user.
    let clients = redis.cli(&["CLIENT", "LIST"]).await;
    let gatehouse: Vec<&str> = clients
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .collect();
    assert!(!gatehouse.is_empty(), "{clients}");
    assert!(
        gatehouse
            .iter()
            .all(|l| l.contains(&format!(" user={ACL_USER} "))),
        "{clients}"
    );
    let keys = redis
        .cli(&["--scan", "--pattern", &format!("{}session:*", app.prefix)])
        .await;
    assert_eq!(keys.lines().count(), 1, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_acl_password_is_not_ready_and_is_never_shown() {
    let redis = acl_redis().await;
    let wrong = "Wr0ng-Passw0rd-Never-Shown";
    let url = format!("redis://{ACL_USER}:{wrong}@127.0.0.1:{}", redis.port);

    // The real binary at debug level, so that its whole output can be searched.
    let dir = TempDir::new();
    let mut vars = base_vars();
    vars.insert("GATEHOUSE__REDIS__URL".into(), url.clone());
    vars.insert("GATEHOUSE__PROVIDER__ISSUER".into(), idp().issuer.clone());
    vars.insert("GATEHOUSE__PROVIDER__AUTH_URL".into(), String::new());
    vars.insert("GATEHOUSE__PROVIDER__TOKEN_URL".into(), String::new());
    vars.insert("GATEHOUSE__LOG__FORMAT".into(), "json".into());
    vars.insert("RUST_LOG".into(), "debug".into());
    let prefix = vars["GATEHOUSE__REDIS__KEY_PREFIX"].clone();
    let mut started = start_binary(&vars, &dir);
    let app = TestApp::at(started.port, prefix, vars.clone());
    app.wait_for_provider().await;

    let mut bodies = String::new();
    for path in ["/readyz", "/signin", "/readyz"] {
        let res = app.get(path).await;
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        assert_eq!(status, 503, "{path}: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["error"], "store_unavailable", "{path}: {text}");
        bodies.push_str(&text);
    }

    started.child.sigterm();
    assert_eq!(
        started.child.wait_exit(Duration::from_secs(10)).code(),
        Some(0)
    );
    let mut logs = started.early.join("\n");
    for line in started.lines.iter() {
        logs.push('\n');
        logs.push_str(&line);
    }
    assert!(
        logs.contains("redis ping failed") && logs.contains("redis call failed"),
        "the failures were logged: {logs}"
    );
    assert!(
        logs.contains("Password authentication failed"),
        "the cause is named: {logs}"
    );
    for (what, text) in [("logs", &logs), ("answers", &bodies)] {
        assert!(!text.contains(wrong), "the password is in the {what}");
        assert!(!text.contains(&url), "the URL is in the {what}");
    }

    // Nor does a URL refused at start-up show it.
    let bad = format!(
        "redis://{ACL_USER}:{wrong}@127.0.0.1:{}/not-a-db",
        redis.port
    );
    let settings = load(
        base_vars()
            .into_iter()
            .chain([("GATEHOUSE__REDIS__URL".to_owned(), bad)])
            .collect(),
    )
    .expect("settings load");
    let Err(e) = gatehouse::startup::Application::build(settings).await else {
        panic!("an unusable URL must stop start-up");
    };
    let text = format!("{e} {e:?}");
    assert!(text.contains("GATEHOUSE__REDIS__URL"), "{text}");
    assert!(!text.contains(wrong), "{text}");
}

// ---- Redis Cluster ----

/// Three cluster-enabled nodes on loopback ports, not a cluster yet (no slots). With `tls`,
/// they speak TLS only, to clients and among themselves.
async fn cluster_nodes(tls: Option<&TlsFiles>) -> Vec<RedisServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let tls_files = tls.map(|t| (t.cert.clone(), t.key.clone(), t.ca.clone()));
        let server = RedisServer::start(move |port| {
            let mut options: Vec<String> = match &tls_files {
                None => vec!["--port".into(), port.to_string()],
                Some((cert, key, ca)) => vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    cert.clone(),
                    "--tls-key-file".into(),
                    key.clone(),
                    "--tls-ca-cert-file".into(),
                    ca.clone(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--tls-cluster".into(),
                    "yes".into(),
                ],
            };
            options.extend([
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                format!("nodes-{port}.conf"),
                "--cluster-node-timeout".into(),
                "2000".into(),
                // The bus port is chosen too (the default, port + 10000, may not be free).
                "--cluster-port".into(),
                dead_port().to_string(),
            ]);
            options
        })
        .await;
        nodes.push(match tls {
            Some(t) => server.with_cli_options(&["--tls", "--cacert", t.ca.as_str()]),
            None => server,
        });
    }
    nodes
}

/// `redis-cli --cluster create` over `nodes` (three masters, no replicas), then waits until
/// every node says `cluster_state:ok`.
async fn form_cluster(nodes: &[RedisServer]) {
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = nodes[0].cli(&create).await;
    assert!(out.contains("All 16384 slots covered"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        loop {
            let info = node.cli(&["CLUSTER", "INFO"]).await;
            if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not form: {info}\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Three masters, slots spread over them, `cluster_state:ok` everywhere.
async fn start_cluster(tls: Option<&TlsFiles>) -> Vec<RedisServer> {
    let nodes = cluster_nodes(tls).await;
    form_cluster(&nodes).await;
    nodes
}

/// `redis-cli MONITOR` on one node: every command it executes, as it executes it.
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
}

impl Monitor {
    async fn start(port: u16) -> Monitor {
        let mut child = tokio::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "MONITOR"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-cli runs");
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // MONITOR answers OK once it is on.
        let first = tokio::time::timeout(Duration::from_secs(5), out.next_line())
            .await
            .expect("MONITOR answered")
            .expect("MONITOR output");
        assert_eq!(first.as_deref(), Some("OK"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Monitor {
            lines,
            _child: child,
        }
    }

    /// The keys of every `SET` it saw that start with `prefix`.
    fn set_keys(&self, prefix: &str) -> Vec<String> {
        let needle = format!("\"SET\" \"{prefix}");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| {
                let at = line.find(&needle)? + "\"SET\" \"".len();
                let key = &line[at..];
                Some(key[..key.find('"')?].to_owned())
            })
            .collect()
    }
}

/// Keys under `pattern` on each node (KEYS is per node in a cluster).
async fn keys_by_node(nodes: &[RedisServer], pattern: &str) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for node in nodes {
        let keys = node.cli(&["--scan", "--pattern", pattern]).await;
        all.push(keys.lines().map(str::to_owned).collect());
    }
    all
}

async fn keyslot(node: &RedisServer, key: &str) -> u16 {
    node.cli(&["CLUSTER", "KEYSLOT", key])
        .await
        .parse()
        .expect("a slot number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_signs_users_in_with_each_session_in_one_slot() {
    let nodes = start_cluster(None).await;
    let seeds = format!(
        "redis://127.0.0.1:{},redis://127.0.0.1:{}",
        nodes[0].port, nodes[1].port
    );
    // Every token counts as "about to expire": each session's first /auth refreshes it,
    // holding the session's lease meanwhile.
    let app = Arc::new(
        spawn_app_with_idp(&[
            ("GATEHOUSE__REDIS__CLUSTER_NODES", &seeds),
            ("GATEHOUSE__TOKENS__REFRESH_BEFORE_SECS", "86400"),
        ])
        .await,
    );
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    let mut monitors = Vec::new();
    for node in &nodes {
        monitors.push(Monitor::start(node.port).await);
    }

    // Twenty browsers at once.
    let mut browsers = JoinSet::new();
    for i in 0..20 {
        let app = app.clone();
        browsers.spawn(async move {
            let (client, jar) = browser_with_jar();
            let login = format!("cluster{i}");
            let res = app.sign_in(&client, &login, None).await;
            assert_eq!(res.status().as_u16(), 303, "{login} signed in");
            let res = client.get(app.url("/auth")).send().await.expect("auth");
            assert_eq!(res.status().as_u16(), 200, "{login}");
            assert_eq!(res.headers()["x-auth-request-user"], login.as_str());
            (login, client, jar)
        });
    }
    let mut signed_in = Vec::new();
    while let Some(done) = browsers.join_next().await {
        signed_in.push(done.expect("browser task"));
    }
    assert_eq!(signed_in.len(), 20);

    // One session per browser, spread over the masters; no pending sign-in or lease left.
    let sessions = keys_by_node(&nodes, &format!("{}session:*", app.prefix)).await;
    assert_eq!(
        sessions.iter().map(Vec::len).sum::<usize>(),
        20,
        "{sessions:?}"
    );
    assert!(
        sessions.iter().filter(|keys| !keys.is_empty()).count() >= 2,
        "sessions are spread over the cluster: {sessions:?}"
    );
    for kind in ["signin", "lock"] {
        let left = keys_by_node(&nodes, &format!("{}{kind}:*", app.prefix)).await;
        assert!(left.iter().all(Vec::is_empty), "{kind} keys left: {left:?}");
    }

    // Each refresh took its session's lease on the node, and in the slot, of the session.
    let session_node: HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .flat_map(|(n, keys)| keys.iter().map(move |k| (k.clone(), n)))
        .collect();
    let lock_prefix = format!("{}lock:", app.prefix);
    let mut leased = HashSet::new();
    for (n, monitor) in monitors.iter().enumerate() {
        for lock in monitor.set_keys(&lock_prefix) {
            let id = lock.trim_start_matches(&lock_prefix);
            let session = format!("{}session:{id}", app.prefix);
            assert_eq!(
                session_node.get(&session),
                Some(&n),
                "lease {lock} taken on the node of {session}"
            );
            assert_eq!(
                keyslot(&nodes[0], &lock).await,
                keyslot(&nodes[0], &session).await,
                "{lock} and {session} share a slot"
            );
            assert_eq!(
                lock,
                gatehouse::store::key_for(&app.prefix, "lock", id.trim_matches(['{', '}'])),
            );
            leased.insert(session);
        }
    }
    assert_eq!(
        leased.len(),
        20,
        "every session was refreshed under its lease"
    );

    // Sign-out ends one session, in the cluster too.
    let (login, client, _jar) = &signed_in[0];
    let out = client
        .post(app.url("/signout"))
        .header("origin", PUBLIC_URL)
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status().as_u16(), 303, "{login} signed out");
    let res = client.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(res.status().as_u16(), 401, "{login} is signed out");
    let sessions = keys_by_node(&nodes, &format!("{}session:*", app.prefix)).await;
    assert_eq!(sessions.iter().map(Vec::len).sum::<usize>(), 19);
    let (other, client, _jar) = &signed_in[1];
    let res = client.get(app.url("/auth")).send().await.expect("auth");
    assert_eq!(res.status().as_u16(), 200, "{other} is still signed in");

    // Replays of one callback still succeed exactly once.
    let authorize = app.start_sign_in(&app.client, None).await;
    let callback = idp_login(&app.client, &authorize, "replayer").await;
    let mut replays = JoinSet::new();
    for _ in 0..10 {
        let app = app.clone();
        let callback = callback.clone();
        replays.spawn(async move {
            let res = app.follow_callback(&app.client, &callback).await;
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, body)
        });
    }
    let mut wins = 0;
    while let Some(done) = replays.join_next().await {
        let (status, body) = done.expect("replay task");
        if status == 303 {
            wins += 1;
        } else {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "invalid_state");
        }
    }
    assert_eq!(wins, 1, "exactly one replay wins");
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_the_sign_in_limits_in_one_slot() {
    // Both limits are checked by one script, which a cluster allows only on keys of one slot;
    // each record lives in a slot of its own and is written after the script admitted it.
    let nodes = start_cluster(None).await;
    let seeds = format!("redis://127.0.0.1:{}", nodes[0].port);
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__CLUSTER_NODES", &seeds),
        ("GATEHOUSE__PROXY__TRUSTED", "127.0.0.1/32"),
        ("GATEHOUSE__SIGNIN__PER_CLIENT_PER_MINUTE", "3"),
        ("GATEHOUSE__SIGNIN__MAX_PENDING", "5"),
    ])
    .await;
    let signin = |ip: &'static str| {
        app.client
            .get(app.url("/signin"))
            .header("x-forwarded-for", ip)
            .send()
    };
    let mut statuses = Vec::new();
    for ip in [
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.1",
        "192.0.2.2",
    ] {
        statuses.push(signin(ip).await.expect("signin").status().as_u16());
    }
    assert_eq!(statuses, [303, 303, 303, 429, 303], "three per client");
    assert_eq!(signin("192.0.2.3").await.expect("signin").status(), 303);
    let full = signin("192.0.2.4").await.expect("signin");
    assert_eq!(full.status().as_u16(), 429, "five pending in all");
    assert_eq!(
        keyslot(
            &nodes[0],
            &format!("{}signin-pending:{{signin}}", app.prefix)
        )
        .await,
        keyslot(
            &nodes[0],
            &format!("{}signin-rate:{{signin}}:192.0.2.1", app.prefix)
        )
        .await,
    );
    let records = keys_by_node(&nodes, &format!("{}signin:*", app.prefix)).await;
    assert_eq!(records.iter().map(Vec::len).sum::<usize>(), 5);
    // A finished sign-in frees its place at once.
    assert_eq!(
        app.get("/signin").await.status().as_u16(),
        429,
        "still full"
    );
    let records = keys_by_node(&nodes, &format!("{}signin:*", app.prefix)).await;
    let key = records.concat().pop().expect("a pending record");
    let state = key.rsplit(':').next().expect("state").to_owned();
    let res = app
        .client
        .get(app.url(&format!("/redirect?state={state}&code=x")))
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status().as_u16(), 400, "another browser's sign-in");
    assert_eq!(
        app.sign_in(&app.client, "cluster-cap", None)
            .await
            .status()
            .as_u16(),
        303,
        "its place was freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_forms_after_start_up_is_used_once_it_is_up() {
    // gatehouse starts against nodes that are not a cluster yet (no slots): not ready, and
    // never stuck; once the cluster forms, it becomes ready without a restart.
    let nodes = cluster_nodes(None).await;
    let seeds = format!("redis://127.0.0.1:{}", nodes[0].port);
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__URL", &seeds),
        ("GATEHOUSE__REDIS__CLUSTER", "true"),
    ])
    .await;
    // Answered while the cluster cannot yet be, so it did not wait for it.
    let res = app.get("/readyz").await;
    assert_json_error(res, 503, "store_unavailable").await;

    form_cluster(&nodes).await;

    // Sign-ins work again without a restart (each attempt answered meanwhile).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = app.get("/signin").await.status().as_u16();
        if status == 303 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "no sign-in once the cluster formed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app.sign_in(&app.client, "late", None).await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(app.get("/auth").await.status().as_u16(), 200);
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_signs_a_user_in_with_the_configured_ca() {
    let files = TempDir::new();
    let tls = make_tls_files(&files);
    let nodes = start_cluster(Some(&tls)).await;
    let seed = format!("rediss://127.0.0.1:{}", nodes[2].port);
    let app = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__URL", &seed),
        ("GATEHOUSE__REDIS__CLUSTER", "true"),
        ("GATEHOUSE__REDIS__CA_FILE", &tls.ca),
    ])
    .await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
    for login in ["tls-one", "tls-two", "tls-three"] {
        let (client, _jar) = browser_with_jar();
        let res = app.sign_in(&client, login, None).await;
        assert_eq!(res.status().as_u16(), 303, "{login} signed in");
        let res = client.get(app.url("/auth")).send().await.expect("auth");
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["x-auth-request-user"], login);
    }
    let sessions = keys_by_node(&nodes, &format!("{}session:*", app.prefix)).await;
    assert_eq!(
        sessions.iter().map(Vec::len).sum::<usize>(),
        3,
        "{sessions:?}"
    );

    // The same cluster without the CA: not ready.
    let untrusting = spawn_app_with_idp(&[
        ("GATEHOUSE__REDIS__URL", &seed),
        ("GATEHOUSE__REDIS__CLUSTER", "true"),
    ])
    .await;
    let res = untrusting.get("/readyz").await;
    assert_json_error(res, 503, "store_unavailable").await;
}

// ---- Faults: Redis killed and restarted under traffic ----

struct Sample {
    /// Sent after Redis was killed (the loop read the flag before sending).
    during_outage: bool,
    /// 0: no answer (the client gave up).
    status: u16,
}

/// The order of events, not their timing, is what is checked here: every request sent while
/// Redis is down is answered 503 before Redis comes back (none waits for its return: the
/// traffic is stopped and drained, and only then is Redis restarted), and afterwards `/auth`
/// is 200 again without restarting gatehouse. A hung request would end as the client's
/// give-up (status 0), never as a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_traffic_fails_closed_and_recovers() {
    // Append-only file, fsync'd on every write: the session outlives the crash, as it would
    // with a persistent production Redis.
    let mut redis = RedisServer::start(|port| {
        [
            "--port",
            &port.to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    })
    .await;
    let app = spawn_app_with_idp(&[("GATEHOUSE__REDIS__URL", &redis.url())]).await;
    let res = app.sign_in(&app.client, "alice", None).await;
    assert_eq!(res.status().as_u16(), 303);
    let cookie = app.cookie_header();

    // Traffic: four keep-alive clients calling /auth with the cookie.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let redis_down = Arc::new(AtomicBool::new(false));
    let mut loops = JoinSet::new();
    for _ in 0..4 {
        let (samples, stop, redis_down) = (samples.clone(), stop.clone(), redis_down.clone());
        let (url, cookie) = (app.url("/auth"), cookie.clone());
        loops.spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                let during_outage = redis_down.load(Ordering::SeqCst);
                let res = client
                    .get(&url)
                    .header("cookie", &cookie)
                    // Only so that a hang ends (as status 0) instead of stalling the test.
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
                samples.lock().unwrap().push(Sample {
                    during_outage,
                    status,
                });
                // Pacing, not synchronisation: ~4 x 50 requests/s.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let count = |during_outage: bool, status: Option<u16>| {
        samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.during_outage == during_outage && status.is_none_or(|st| s.status == st))
            .count()
    };
    wait_until(Duration::from_secs(30), || count(false, Some(200)) >= 20).await;

    redis.kill();
    redis_down.store(true, Ordering::SeqCst);
    // The outage lasts a while (reconnect attempts come and go) and sees plenty of requests.
    let killed = Instant::now();
    wait_until(Duration::from_secs(60), || {
        killed.elapsed() >= Duration::from_secs(2) && count(true, None) >= 40
    })
    .await;
    let res = app.get("/readyz").await;
    assert_json_error(res, 503, "store_unavailable").await;
    let res = reqwest::Client::new()
        .get(app.url("/auth"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("auth");
    assert_json_error(res, 503, "store_unavailable").await;
    // Drain the traffic while Redis is still down: every request it sent is answered.
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = loops.join_next().await {
        done.expect("traffic loop");
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let outage: Vec<u16> = samples
        .iter()
        .filter(|s| s.during_outage)
        .map(|s| s.status)
        .collect();
    assert!(
        outage.len() >= 40,
        "{} requests in the outage",
        outage.len()
    );
    let statuses: HashSet<u16> = outage.iter().copied().collect();
    assert_eq!(
        statuses,
        HashSet::from([503]),
        "every request sent while Redis was down was answered 503 before it came back"
    );

    redis.restart().await;
    // Back by itself: the same session, the same gatehouse (never restarted). Polled, with a
    // generous bound that only keeps a broken build from hanging.
    let client = reqwest::Client::new();
    let auth = || {
        client
            .get(app.url("/auth"))
            .header("cookie", &cookie)
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = auth().await.expect("auth");
        match res.status().as_u16() {
            200 => {
                assert_eq!(res.headers()["x-auth-request-user"], "alice");
                break;
            }
            503 => {}
            other => panic!("/auth answered {other} while Redis came back"),
        }
        assert!(Instant::now() < deadline, "/auth never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Steady once recovered, on every worker. Each worker has its own Redis connection, and
    // an idle worker's connection comes back on its first use after Redis returns: that
    // first use may still be answered 503 (fail-closed), at most once per worker. Fresh
    // connections reach every worker (actix hands them out in turn).
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut after = Vec::new();
    for _ in 0..10 * workers {
        let res = reqwest::Client::new()
            .get(app.url("/auth"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("auth");
        after.push(res.status().as_u16());
    }
    let late_failures = after.iter().filter(|s| **s != 200).count();
    assert!(
        late_failures <= workers && after.iter().all(|s| matches!(s, 200 | 503)),
        "at most one 503 per worker ({workers}) after recovery: {after:?}"
    );
    assert_eq!(
        after[after.len() - 5 * workers..],
        vec![200; 5 * workers],
        "steady once every worker has been used: {after:?}"
    );
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}

/// Polls `done` every 20 ms until it holds; fails after `bound`.
async fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
