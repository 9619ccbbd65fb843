use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;

/// Exit status for a settings or start-up problem (distinct from a crash).
const EXIT_CONFIG: i32 = 2;

fn main() {
    // `args()` would panic on an argument that is not UTF-8.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // No arguments: serve. Otherwise the first argument names a command, each run by a
    // function of the module it belongs to.
    let status = match args.first().map(String::as_str) {
        None => {
            serve();
            return;
        }
        Some(first) if gatehouse::directory::admin::COMMANDS.contains(&first) => {
            gatehouse::directory::admin::main(&args, |settings| {
                gatehouse::store::index::SessionIndex::from_settings(settings)
            })
        }
        Some("login" | "token" | "logout") => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(gatehouse::cli::run(&args)),
            Err(e) => {
                eprintln!("gatehouse: cannot start: {e}");
                1
            }
        },
        Some("client-jwk") => gatehouse::oauth::client_jwk::run(&args[1..]),
        Some(other) => {
            eprintln!(
                "gatehouse: unknown command `{other}` (commands: login, token, logout, \
                 client-jwk, migrate, users, sessions, audit)"
            );
            EXIT_CONFIG
        }
    };
    std::process::exit(status);
}

#[actix_web::main]
async fn serve() {
    let loaded = match Settings::load(Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    // Held to the end of main: dropping it writes out the queued log lines. `process::exit`
    // drops nothing, so each exit below flushes it first.
    let log = match gatehouse::telemetry::init(&loaded.settings.log) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("gatehouse: cannot start the log writer: {e}");
            std::process::exit(1);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let app = match Application::build(loaded.settings).await {
        Ok(app) => app,
        Err(e) => {
            log.flush();
            eprintln!("gatehouse: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if let Err(e) = app.shutdown_on_signals() {
        log.flush();
        eprintln!("gatehouse: cannot install signal handlers: {e}");
        std::process::exit(1);
    }
    tracing::info!(port = app.port(), "gatehouse listening");
    if let Err(e) = app.run_until_stopped().await {
        log.flush();
        eprintln!("gatehouse: server error: {e}");
        std::process::exit(1);
    }
    tracing::info!("gatehouse stopped");
}
