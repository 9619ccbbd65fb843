use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;

/// Exit status for a settings or start-up problem (distinct from a crash).
const EXIT_CONFIG: i32 = 2;

#[actix_web::main]
async fn main() {
    // `args()` would panic on an argument that is not UTF-8.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // No arguments: serve. Otherwise the first argument names a command, each run by a
    // function of the module it belongs to.
    match args.first().map(String::as_str) {
        None => serve().await,
        Some("login" | "token" | "logout") => std::process::exit(gatehouse::cli::run(&args).await),
        Some("client-jwk") => std::process::exit(gatehouse::oauth::client_jwk::run(&args[1..])),
        Some(other) => {
            eprintln!(
                "gatehouse: unknown command `{other}` (commands: login, token, logout, client-jwk)"
            );
            std::process::exit(EXIT_CONFIG);
        }
    }
}

async fn serve() {
    let loaded = match Settings::load(Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    gatehouse::telemetry::init(loaded.settings.log.format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let app = match Application::build(loaded.settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if let Err(e) = app.shutdown_on_signals() {
        eprintln!("gatehouse: cannot install signal handlers: {e}");
        std::process::exit(1);
    }
    tracing::info!(port = app.port(), "gatehouse listening");
    if let Err(e) = app.run_until_stopped().await {
        eprintln!("gatehouse: server error: {e}");
        std::process::exit(1);
    }
    tracing::info!("gatehouse stopped");
}
