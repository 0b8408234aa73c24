//! `office-controller branch add NAME --url URL --user USER --password-env VAR|--password-file PATH --policy P
//! [--number N]`: records a branch. The password itself is never stored, only where to find it.

use anyhow::{Result, bail};
use serde_json::json;

use crate::commands::Output;
use crate::config::Config;
use crate::{records, sync};

/// Arguments of `branch add`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddArgs {
    /// The branch's name.
    pub name: String,
    /// The shop agent's base URL, e.g. https://shop1.example:8080.
    #[arg(long)]
    pub url: String,
    /// The agent user (role office).
    #[arg(long)]
    pub user: String,
    /// Environment variable holding the agent password.
    #[arg(long, conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// File holding the agent password.
    #[arg(long)]
    pub password_file: Option<String>,
    /// The named policy from the configuration.
    #[arg(long)]
    pub policy: String,
    /// Branch number (its id range starts at number × id_range); default: the next free one.
    #[arg(long)]
    pub number: Option<i64>,
}

/// Where the agent password is, as the branch record keeps it (`env:VAR` or `file:PATH`); `None` when neither
/// is given.
pub fn credential_reference(env: Option<&str>, file: Option<&str>) -> Result<Option<String>> {
    match (env, file) {
        (Some(var), None) if !var.is_empty() => Ok(Some(format!("env:{var}"))),
        (None, Some(path)) if !path.is_empty() => Ok(Some(format!("file:{path}"))),
        (None, None) => Ok(None),
        _ => bail!("give the agent password as one non-empty --password-env VAR or --password-file PATH"),
    }
}

/// Refuses an agent URL that is not HTTP(S).
pub fn check_url(url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url must start with http:// or https://");
    }
    Ok(())
}

/// Runs `branch add`.
pub async fn run(config: &Config, args: AddArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    config.policy(&args.policy, &office).await?;
    let Some(credential) = credential_reference(args.password_env.as_deref(), args.password_file.as_deref())? else {
        bail!("give the agent password as --password-env VAR or --password-file PATH");
    };
    check_url(&args.url)?;
    let number = match args.number {
        Some(n) if n > 0 => n,
        Some(_) => bail!("--number must be at least 1 (0 is the office)"),
        None => records::next_number(&office).await?,
    };
    if number.checked_mul(config.sync.id_range).and_then(|s| s.checked_add(config.sync.id_range)).is_none() {
        bail!("branch number {number} times id_range {} does not fit a 64-bit id", config.sync.id_range);
    }
    let new = records::NewBranch {
        name: &args.name,
        policy: &args.policy,
        url: &args.url,
        username: &args.user,
        credential: &credential,
        id_range: config.sync.id_range,
    };
    if !records::add(&office, new, number).await? {
        bail!("a branch named {} or numbered {number} exists already, see `office-controller branch list`", args.name);
    }
    let text = format!(
        "branch {} added as number {number} (ids from {}), run `office-controller branch init {}` next\n",
        args.name,
        number * config.sync.id_range,
        args.name
    );
    Ok(Output::ok(text, json!({"branch": args.name, "number": number, "policy": args.policy, "url": args.url})))
}
