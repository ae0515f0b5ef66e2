//! `portfolio-api`: parses the command line, reads the settings, sets up telemetry and calls
//! into the library, where each subcommand's work lives.

use clap::{Parser, Subcommand};
use portfolio_api::auth::keys_cli;
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
    /// Make, list and revoke API keys (on the database of DATABASE_URL).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key; it is printed once, alone on the last line of standard output.
    Create {
        /// The tenant the key acts for: its jobs belong to this name (a new key of the same
        /// name, made to rotate an old one, sees the same jobs).
        #[arg(long)]
        name: String,
        /// `simulate` (submit, read and cancel one's own jobs; the default) or `operator`
        /// (queue statistics, the dashboard, every tenant's jobs read-only). Repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Every key: id, name, prefix, scopes, created, last used, revoked.
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke { id: i64 },
}

fn main() -> anyhow::Result<()> {
    portfolio_shared::telemetry::quiet_error_backtraces();
    let cli = Cli::parse();
    let settings = Settings::from_env_or_exit();
    telemetry::init(&settings.telemetry);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => portfolio_api::startup::serve(settings),
        Command::Migrate => {
            let applied = db::migrate(settings.database.url.expose_secret())?;
            if applied.is_empty() {
                tracing::info!("the database was up to date: no migration to apply");
            } else {
                tracing::info!(
                    ?applied,
                    "applied {} migration(s); the database is up to date",
                    applied.len()
                );
            }
            Ok(())
        }
        Command::Healthcheck => portfolio_shared::health_probe::check(settings.api.bind, "/health"),
        Command::Keys(command) => {
            let url = settings.database.url.expose_secret();
            match command {
                KeysCommand::Create { name, scopes } => keys_cli::create(url, &name, &scopes),
                KeysCommand::List => keys_cli::list(url),
                KeysCommand::Revoke { id } => keys_cli::revoke(url, id),
            }
        }
    }
}
