//! `branchsync-demo`: parses the command line, sets up logging, runs the demo and prints what happened; removes
//! everything it started also on Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Throwaway office and two shops: load, sell, sync, verify, report. Needs only the PostgreSQL server binaries.
#[derive(Debug, Parser)]
#[command(name = "branchsync-demo", version, about)]
struct Cli {
    #[command(flatten)]
    args: demo::DemoArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_writer(std::io::stderr).init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                tokio::select! {
                    out = demo::run(cli.args) => out,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the demo's clusters were removed"),
                }
            })
        });
    match result {
        Ok(output) => {
            #[allow(clippy::print_stdout)]
            {
                print!("{}", output.text);
            }
            if output.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
