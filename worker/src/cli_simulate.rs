//! `portfolio-worker simulate`: the engine on a request file, without Redis or Postgres. The
//! quickest way to use the model, and the entry point of the benchmark script.

use std::path::PathBuf;

use anyhow::Context;
use portfolio_engine::request::{RequestLimits, SimulationRequest};
use portfolio_engine::{RequestError, RunOptions, SimulationResult};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Json,
    Table,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// A JSON request, as for POST /simulations (`-` reads standard input).
    #[arg(long)]
    pub(crate) request: PathBuf,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    #[arg(long, value_enum, default_value = "json")]
    pub(crate) format: Format,
    /// Scenarios per batch (does not change the result).
    #[arg(long, default_value_t = 1024)]
    pub(crate) batch_size: usize,
}

/// Reads the request, runs the engine on it and prints the result.
pub fn simulate_and_print(args: &SimulateArgs) -> anyhow::Result<()> {
    let body = if args.request.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the request from stdin")?
    } else {
        std::fs::read_to_string(&args.request)
            .with_context(|| format!("reading {}", args.request.display()))?
    };
    let request = match SimulationRequest::from_json(body.as_bytes(), &RequestLimits::default()) {
        Ok(r) => r,
        Err(RequestError::Malformed(m)) => anyhow::bail!("the request is not valid JSON: {m}"),
        Err(RequestError::Invalid(errors)) => {
            let lines: Vec<String> =
                errors.iter().map(|e| format!("  {}: {}", e.field, e.message)).collect();
            anyhow::bail!("the request is invalid:\n{}", lines.join("\n"))
        }
    };
    let seed = request.seed().unwrap_or_else(portfolio_engine::request::draw_seed);
    // Held to CPUs as the worker's are, so that this measures the engine as it runs there.
    let pool = crate::engine_threads::pool(args.threads.unwrap_or(0), true, "engine-")?;
    let options = RunOptions { batch_size: args.batch_size, ..RunOptions::default() };
    let result = pool
        .install(|| portfolio_engine::run(&request, seed, &options))
        .context("running the engine")?;
    match args.format {
        Format::Json => {
            let out =
                serde_json::json!({ "seed": seed, "request": request.to_json(), "result": result });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => print!("{}", table(&result, seed)),
    }
    Ok(())
}

fn table(r: &SimulationResult, seed: u64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "success probability {:.4} (± {:.4})   scenarios {}   seed {}   {:.0} ms",
        r.success_probability,
        r.success_probability_stderr.unwrap_or(0.0),
        r.n_scenarios,
        seed,
        r.elapsed_ms
    );
    if let Some(solve) = &r.solve {
        let _ = writeln!(
            s,
            "safe monthly spending {:.2} at success {:.4} (target {})",
            solve.safe_monthly_spending, solve.success_probability, solve.target_success
        );
    }
    let _ = writeln!(
        s,
        "{:>4} {:>14} {:>14} {:>14} {:>14} {:>14} {:>9}",
        "year", "p5", "p25", "p50 (real)", "p75", "p95", "depleted"
    );
    let p = &r.percentiles;
    for (i, y) in r.years.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4} {:>14.0} {:>14.0} {:>14.0} {:>14.0} {:>14.0} {:>8.2}%",
            y,
            p.p5[i],
            p.p25[i],
            p.p50[i],
            p.p75[i],
            p.p95[i],
            100.0 * r.depletion_probability_by_year[i]
        );
    }
    for note in &r.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}
