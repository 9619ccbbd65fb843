use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;

/// Exit status for a settings or start-up problem (distinct from a crash).
const EXIT_CONFIG: i32 = 2;

#[actix_web::main]
async fn main() {
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
