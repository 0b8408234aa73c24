//! `office-controller branch set NAME [--url URL] [--user USER] [--password-env VAR|--password-file PATH]
//! [--policy P]`: changes how the office reaches a branch, or which policy it has, without re-initialising it.
//! A new URL for the same shop is ordinary (a new address, a moved server); a URL that reaches another branch's
//! agent is refused, since every later sync would drive that shop.

use anyhow::{Result, bail};
use serde_json::json;

use crate::commands::Output;
use crate::commands::branch_add::{check_url, credential_reference};
use crate::config::Config;
use crate::records::{self, BranchChange};
use crate::sync::{self, explain};

/// Arguments of `branch set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// The branch.
    pub name: String,
    /// The shop agent's new base URL.
    #[arg(long)]
    pub url: Option<String>,
    /// The agent user.
    #[arg(long)]
    pub user: Option<String>,
    /// Environment variable holding the agent password.
    #[arg(long, conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// File holding the agent password.
    #[arg(long)]
    pub password_file: Option<String>,
    /// Another named policy from the configuration; `branch reconfigure` then hands it to the shop.
    #[arg(long)]
    pub policy: Option<String>,
}

/// Runs `branch set`.
pub async fn run(config: &Config, args: SetArgs) -> Result<Output> {
    let office = sync::office(config).await?;
    let branch = records::find(&office, &args.name).await?;
    let credential = credential_reference(args.password_env.as_deref(), args.password_file.as_deref())?;
    if args.url.is_none() && args.user.is_none() && credential.is_none() && args.policy.is_none() {
        bail!("nothing to change: give --url, --user, --password-env, --password-file or --policy");
    }
    if let Some(url) = &args.url {
        check_url(url)?;
    }
    let mut notes = Vec::new();
    let mut policy_changed = false;
    if let Some(name) = &args.policy {
        let new = config.policy(name, &office).await?;
        let old = config.policy(&branch.policy, &office).await.map(|p| p.tables).ok();
        policy_changed = old.is_none_or(|old| !old.same_tables(&new.tables));
    }
    let changed = records::Branch {
        url: args.url.clone().unwrap_or_else(|| branch.url.clone()),
        username: args.user.clone().unwrap_or_else(|| branch.username.clone()),
        credential: credential.clone().unwrap_or_else(|| branch.credential.clone()),
        ..branch.clone()
    };
    let reaches_agent = args.url.is_some() || args.user.is_some() || credential.is_some();
    if reaches_agent && branch.initialised_at.is_some() {
        // The agent behind the new address must be this branch's: checked now when it answers, otherwise by the
        // next sync, which refuses another branch or another database in the same way.
        match sync::agent(&changed, &config.sync)?.status().await.map_err(explain) {
            Ok(status) => {
                let shop = status.database.as_ref().ok();
                if let Some(other) = sync::other_branch(&branch, &status) {
                    bail!(
                        "the agent at {} is configured as branch {other}, not {}: nothing was changed; check the URL",
                        changed.url,
                        branch.name
                    );
                }
                let identity = shop.map(|s| s.database_identity.as_str()).unwrap_or_default();
                if let Some(recorded) = &branch.shop_identity
                    && !identity.is_empty()
                    && identity != recorded
                {
                    notes.push(format!(
                        "the shop database behind {} is not the one recorded for {} ({recorded}, now {identity}): the next sync refuses it until `sync {} --rebind`, if it is this shop restored or moved",
                        changed.url, branch.name, branch.name
                    ));
                }
            }
            Err(e) => notes.push(format!("could not reach the agent to check it ({e}); the next sync checks it")),
        }
    }
    let change = BranchChange {
        url: args.url.as_deref(),
        username: args.user.as_deref(),
        credential: credential.as_deref(),
        policy: args.policy.as_deref(),
    };
    if !records::update(&office, &branch.name, change).await? {
        bail!("no branch named {}, see `office-controller branch list`", branch.name);
    }
    if policy_changed && branch.initialised_at.is_some() {
        notes.push(format!(
            "run `office-controller branch reconfigure {}` to hand the shop its new tables; syncs refuse until then",
            branch.name
        ));
    }
    let mut text = format!("branch {} changed\n", branch.name);
    for note in &notes {
        text.push_str(&format!("note: {note}\n"));
    }
    Ok(Output::ok(
        text,
        json!({"branch": branch.name, "url": changed.url, "user": changed.username, "policy": args.policy.unwrap_or(branch.policy), "notes": notes}),
    ))
}
