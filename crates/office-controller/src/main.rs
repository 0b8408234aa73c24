//! `office-controller`: parses the command line, sets up logging and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Head office's sync controller for branchsync.
#[derive(Debug, Parser)]
#[command(name = "office-controller", version, about)]
struct Cli {
    /// Log more (repeat for more still).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start throwaway clusters for an office and a shop, load sample data, exchange both ways, verify.
    Demo(office_controller::commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => office_controller::commands::demo::run(args).await.map(|report| report.to_string()),
        }
    });
    match result {
        Ok(output) => {
            #[allow(clippy::print_stdout)]
            {
                print!("{output}");
            }
            ExitCode::SUCCESS
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
