use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;

/// Exit status for a settings or start-up problem (distinct from a crash).
const EXIT_CONFIG: i32 = 2;

fn main() {
    // `run` returns only once everything it made is dropped, the log's guard included, so
    // every line logged before exit is written out first.
    let code = actix_web::rt::System::new().block_on(run());
    std::process::exit(code);
}

async fn run() -> i32 {
    let loaded = match Settings::load(Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return EXIT_CONFIG;
        }
    };
    let _log = match gatehouse::telemetry::init(&loaded.settings.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("gatehouse: cannot start the log writer: {e}");
            return 1;
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let app = match Application::build(loaded.settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = app.shutdown_on_signals() {
        eprintln!("gatehouse: cannot install signal handlers: {e}");
        return 1;
    }
    tracing::info!(port = app.port(), "gatehouse listening");
    if let Err(e) = app.run_until_stopped().await {
        eprintln!("gatehouse: server error: {e}");
        return 1;
    }
    tracing::info!("gatehouse stopped");
    0
}
