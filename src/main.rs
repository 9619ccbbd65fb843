use gatehouse::config::{Settings, Sources};
use gatehouse::startup::Application;

/// Exit status for a settings or start-up problem (distinct from a crash).
const EXIT_CONFIG: i32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first = args.first().map(String::as_str).unwrap_or_default();
    if gatehouse::directory::admin::COMMANDS.contains(&first) {
        // LEAD: pass the session index's SessionEnder here (users block, sessions revoke).
        std::process::exit(gatehouse::directory::admin::main(&args, |_| {
            Err::<gatehouse::directory::admin::Unwired, _>(
                "the session index is not wired into this build yet".to_owned(),
            )
        }));
    }
    serve();
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
