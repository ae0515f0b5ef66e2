//! `portfolio-api`: parses the command line, reads the settings, sets up telemetry and calls
//! into the library, where each subcommand's work lives.

use clap::{Parser, Subcommand};
use portfolio_shared::settings::{ExposeSecret, Settings};
use portfolio_shared::{db, telemetry};

#[derive(Parser)]
#[command(name = "portfolio-api", version, about = "portfolio-mc HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on API_BIND (the default).
    Serve,
    /// Apply pending database migrations (under an advisory lock) and exit.
    Migrate,
    /// Exit 0 if this host's API answers /health (for container health checks).
    Healthcheck,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    telemetry::init(&settings.telemetry);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => portfolio_api::startup::serve(settings),
        Command::Migrate => {
            let applied = db::migrate(settings.database.url.expose_secret())?;
            tracing::info!(?applied, "database is up to date");
            Ok(())
        }
        Command::Healthcheck => portfolio_shared::health_probe::check(settings.api.bind, "/health"),
    }
}
