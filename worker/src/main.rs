//! `portfolio-worker`: parses the command line, reads the settings, sets up telemetry and calls
//! into the library, where each subcommand's work lives.

use clap::{Parser, Subcommand};
use portfolio_shared::settings::Settings;
use portfolio_shared::telemetry;

#[derive(Parser)]
#[command(name = "portfolio-worker", version, about = "portfolio-mc worker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Pull jobs from the queue until SIGTERM (the default).
    Run,
    /// Run the engine on a request file and print the result (no Redis, no Postgres).
    Simulate(portfolio_worker::cli_simulate::SimulateArgs),
    /// Exit 0 if this host's worker answers /health on METRICS_BIND.
    Healthcheck,
}

fn main() -> anyhow::Result<()> {
    portfolio_shared::telemetry::quiet_error_backtraces();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Simulate(args) => {
            // A bad request file is the user's to fix: the message alone, whatever
            // RUST_BACKTRACE says (anyhow would print a backtrace of our own code).
            if let Err(e) = portfolio_worker::cli_simulate::simulate_and_print(&args) {
                eprintln!("Error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Healthcheck => {
            let settings = Settings::from_env_or_exit();
            portfolio_shared::health_probe::check(settings.worker.metrics_bind, "/health")
        }
        Command::Run => {
            let settings = Settings::from_env_or_exit();
            telemetry::init(&settings.telemetry);
            let outcome = portfolio_worker::supervisor::run_until_terminated(settings);
            // Leave now, whatever engine threads are still finishing.
            std::process::exit(i32::from(outcome.is_err()));
        }
    }
}
