//! `shop-agent`: parses the command line, loads the configuration, sets up logging, binds, and hands over to
//! the library's `run` until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

/// The shop's sync agent for branchsync.
#[derive(Debug, Parser)]
#[command(name = "shop-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve XML-RPC at /RPC2, /healthz and /metrics.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Read one password on stdin and print its argon2 PHC string for the configuration.
    HashPassword,
    /// Print a commented default configuration.
    PrintDefaultConfig,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
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

#[allow(clippy::print_stdout)]
fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::PrintDefaultConfig => {
            print!("{}", shop_agent::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::HashPassword => {
            println!("{}", service::auth::hash_from(std::io::stdin(), "shop-agent").map_err(anyhow::Error::msg)?);
            Ok(())
        }
        Command::Serve { config, log_format } => {
            let format = match log_format {
                LogFormat::Text => service::process::LogFormat::Text,
                LogFormat::Json => service::process::LogFormat::Json,
            };
            service::process::init_logging(format, tracing::Level::INFO);
            let config = shop_agent::Config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                shop_agent::run(config, listener, service::process::shutdown_signal())
                    .await
                    .context("the server stopped with an error")
            })
        }
    }
}
