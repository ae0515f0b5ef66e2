use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "portfolio-worker", version, about = "portfolio-mc worker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine on a request file and print the result.
    Simulate(portfolio_worker::simulate::SimulateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Simulate(args)) => portfolio_worker::simulate::run(&args),
        None => anyhow::bail!("not yet"),
    }
}
