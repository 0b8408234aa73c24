//! `office-controller`: parses the command line, loads the configuration, sets up logging and hands over to the
//! library's commands; prints their output as a table or as JSON, and exits non-zero when something failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use office_controller::commands::{self, Output};
use office_controller::config::{Config, EXAMPLE_CONFIG};

/// Head office's sync controller for branchsync.
#[derive(Debug, Parser)]
#[command(name = "office-controller", version, about)]
struct Cli {
    /// The TOML configuration file (not needed by `print-example-config`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print data as JSON for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// Log more (repeat for more still).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log line format: `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, global = true, default_value = "text")]
    log_format: service::process::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the office's sync schema, records and change capture.
    Init,
    /// Add, list, remove or initialise branches.
    #[command(subcommand)]
    Branch(BranchCommand),
    /// Run as the office service: every branch synced on the [schedule], `/healthz` on the listener.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: String,
    },
    /// Sync branches: pull their changes, push the office's.
    Sync(commands::sync::SyncArgs),
    /// Compare a branch's tables with the office's by checksum: in sync, in flight or drift, and the repair.
    Verify(commands::verify::VerifyArgs),
    /// Every branch's state, last sync, lag, waiting changes, last error and live agent status; `--check` for
    /// Nagios/Icinga.
    Status(commands::status::StatusArgs),
    /// The sync log.
    Log(commands::log::LogArgs),
    /// The recorded conflicts.
    Conflicts(commands::log::LogArgs),
    /// Print a commented example configuration.
    PrintExampleConfig,
    /// Read one password on stdin and print its argon2 PHC string for `[[service.users]]`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
enum BranchCommand {
    /// Record a branch.
    Add(commands::branch_add::AddArgs),
    /// Change a branch's URL, agent credential or policy without re-initialising it.
    Set(commands::branch_set::SetArgs),
    /// Hand an initialised shop the policy it now has, without clean: newly sent tables are captured (with
    /// their rows so far), newly received ones loaded in full.
    Reconfigure {
        /// The branch.
        name: String,
    },
    /// List branches.
    List,
    /// Forget a branch.
    Remove {
        /// The branch.
        name: String,
    },
    /// Clean and configure the shop, load it fully, set its id range.
    Init {
        /// The branch.
        name: String,
        /// Initialise a branch that was initialised before or whose shop holds changes (pulled first).
        #[arg(long)]
        force: bool,
        /// Take over an agent that is configured as another branch.
        #[arg(long)]
        rebind: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service logs its jobs by default; a command only its warnings.
    let level = match (cli.verbose, matches!(cli.command, Command::Serve { .. })) {
        (0, false) => tracing::Level::WARN,
        (0, true) | (1, _) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    service::process::init_logging(cli.log_format, level);
    let json = cli.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(output) => {
            #[allow(clippy::print_stdout)]
            {
                if json {
                    println!("{}", serde_json::to_string_pretty(&output.json).unwrap_or_default());
                } else {
                    print!("{}", output.text);
                }
            }
            match output.exit_code {
                Some(code) => ExitCode::from(code),
                None if output.ok => ExitCode::SUCCESS,
                None => ExitCode::FAILURE,
            }
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

async fn run(cli: Cli) -> Result<Output> {
    let config = || -> Result<Config> {
        let path = cli
            .config
            .as_ref()
            .context("this command needs --config FILE (see `office-controller print-example-config`)")?;
        Config::load(path)
    };
    match cli.command {
        Command::Serve { listen } => {
            let first = config()?;
            let listener =
                tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            // SIGHUP reads the file again; the service takes it only if it checks.
            let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
            if let (Some(mut hangups), Some(path)) = (service::process::reload_signal(), cli.config.clone()) {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        match Config::load(&path) {
                            Ok(config) => {
                                let _ = reload_tx.send(config);
                            }
                            Err(e) => {
                                tracing::warn!(error = %format!("{e:#}"), "SIGHUP: the configuration does not load; the one in force stays")
                            }
                        }
                    }
                });
            }
            office_controller::serve::run_with_reload(first, listener, service::process::shutdown_signal(), reloads)
                .await?;
            Ok(Output::ok("office service stopped\n".into(), serde_json::Value::Null))
        }
        Command::HashPassword => {
            let hash = service::auth::hash_from(std::io::stdin(), "office-controller").map_err(anyhow::Error::msg)?;
            Ok(Output::ok(format!("{hash}\n"), serde_json::Value::String(hash)))
        }
        Command::PrintExampleConfig => Ok(Output::ok(EXAMPLE_CONFIG.to_string(), serde_json::Value::Null)),
        Command::Init => commands::init::run(&config()?).await,
        Command::Branch(BranchCommand::Add(args)) => commands::branch_add::run(&config()?, args).await,
        Command::Branch(BranchCommand::Set(args)) => commands::branch_set::run(&config()?, args).await,
        Command::Branch(BranchCommand::Reconfigure { name }) => {
            commands::branch_reconfigure::run(&config()?, &name).await
        }
        Command::Branch(BranchCommand::List) => commands::branch_list::run(&config()?).await,
        Command::Branch(BranchCommand::Remove { name }) => commands::branch_remove::run(&config()?, &name).await,
        Command::Branch(BranchCommand::Init { name, force, rebind }) => {
            commands::branch_init::run_with(&config()?, &name, commands::branch_init::InitOptions { force, rebind })
                .await
        }
        Command::Sync(args) => commands::sync::run(&config()?, args).await,
        Command::Verify(args) => commands::verify::run_with(&config()?, args).await,
        Command::Status(args) if args.check => {
            // A check that cannot even read its configuration is UNKNOWN (3), not a failure code of its own.
            match config() {
                Ok(config) => commands::status::run_with(&config, args).await,
                Err(e) => Ok(commands::Output {
                    text: format!("BRANCHSYNC UNKNOWN - {}\n", format!("{e:#}").replace('\n', " ")),
                    json: serde_json::json!({"status": "unknown", "error": format!("{e:#}")}),
                    ok: false,
                    exit_code: Some(3),
                }),
            }
        }
        Command::Status(args) => commands::status::run_with(&config()?, args).await,
        Command::Log(args) => commands::log::run(&config()?, args).await,
        Command::Conflicts(args) => commands::conflicts::run(&config()?, args).await,
    }
}
