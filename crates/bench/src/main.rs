//! `bench`: runs every benchmark scenario on throwaway clusters, prints the table, and with `--write` records
//! it in BENCHMARKS.md with the machine, date, commit and command.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::Parser;

/// Benchmarks of branchsync side by side with its peers (BRIEF §8).
#[derive(Debug, Parser)]
#[command(name = "bench", about)]
struct Args {
    /// Products in the initial load.
    #[arg(long)]
    products: Option<i64>,
    /// New shop rows for the catch-up.
    #[arg(long)]
    changes: Option<i64>,
    /// Runs of the small-change latency.
    #[arg(long)]
    latency_runs: Option<usize>,
    /// Branch counts of the fleet scenario, comma-separated.
    #[arg(long, value_delimiter = ',')]
    fleet: Option<Vec<usize>>,
    /// Rows of the agent's diff scenario.
    #[arg(long)]
    agent_rows: Option<i64>,
    /// Branches of the service scenario.
    #[arg(long)]
    serve_branches: Option<usize>,
    /// Intervals the service scenario runs for.
    #[arg(long)]
    serve_rounds: Option<u32>,
    /// Run only these scenarios: load, catchup, fleet, agent, hammer, memory, serve (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Use the tiny sizes of the test suite.
    #[arg(long)]
    tiny: bool,
    /// Write the results to this Markdown file (e.g. BENCHMARKS.md).
    #[arg(long)]
    write: Option<std::path::PathBuf>,
    /// Log the bounds of timed sections (monotonic clock, for `perf report --time`) and the components' info.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let level = if std::env::args().any(|a| a == "--verbose") { tracing::Level::DEBUG } else { tracing::Level::WARN };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[allow(clippy::print_stdout)]
fn real_main() -> Result<()> {
    let args = Args::parse();
    let mut sizes = if args.tiny { bench::Sizes::tiny() } else { bench::Sizes::full() };
    if let Some(v) = args.products {
        sizes.products = v;
    }
    if let Some(v) = args.changes {
        sizes.changes = v;
    }
    if let Some(v) = args.latency_runs {
        sizes.latency_runs = v;
    }
    if let Some(v) = args.serve_branches {
        sizes.serve_branches = v;
    }
    if let Some(v) = args.serve_rounds {
        sizes.serve_rounds = v;
    }
    if let Some(v) = args.fleet {
        sizes.fleet = v;
    }
    if let Some(v) = args.only {
        sizes.only = v;
    }
    if let Some(v) = args.agent_rows {
        sizes.agent_rows = v;
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let results = runtime.block_on(bench::run(&sizes))?;
    let table = bench::table(&results);
    print!("{table}");
    for note in &results.notes {
        println!("- {note}");
    }
    if let Some(path) = args.write {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let text = format!(
            "# Benchmarks\n\nMeasured by `bench` (crates/bench): every figure of ours and of the peer comes from the same run on the same \
             throwaway clusters. Reproduce with `cargo build --release --workspace && {command}`.\n\n\
             - machine: {} cores, {}, {}\n- date: {}\n- commit: {}\n- PostgreSQL: {}\n\n{table}\n{}\n",
            shell("nproc"),
            shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            shell("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
            shell("date -u +%Y-%m-%dT%H:%MZ"),
            shell("git rev-parse --short HEAD"),
            shell("postgres --version 2>/dev/null || /usr/lib/postgresql/15/bin/postgres --version"),
            results.notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n"),
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    anyhow::ensure!(!results.failed, "a scenario failed, see the notes above");
    Ok(())
}
