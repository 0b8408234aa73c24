//! Benchmarks of branchsync side by side with the tool a user would use instead, measured in the same run on
//! the same throwaway clusters (BRIEF §8): initial load against `pg_dump | psql`, catch-up against PostgreSQL's
//! logical replication, bytes per row against gzip of `COPY` text, small-change latency, a fleet of branches,
//! the agent's memory and `status` rate, a valid call's latency while wrong passwords hammer the agent, and the office service keeping a chain on its
//! schedule. Figures are reported, never asserted.

pub mod scenarios;
pub mod setup;

use std::fmt::Write;

use anyhow::Result;

pub use setup::{Env, Line, Results, Sizes};

/// Runs every scenario.
pub async fn run(sizes: &Sizes) -> Result<Results> {
    let env = Env::start().await?;
    let mut results = Results::default();
    // A scenario that fails is reported and the others still run; the run fails at the end.
    let mut failed = Vec::new();
    let wanted = |name: &str| sizes.only.is_empty() || sizes.only.iter().any(|o| o == name);
    if wanted("load")
        && let Err(e) = scenarios::initial_load(&env, sizes, &mut results).await
    {
        failed.push(format!("initial load: {e:#}"));
    }
    if wanted("catchup")
        && let Err(e) = scenarios::catch_up(&env, sizes, &mut results).await
    {
        failed.push(format!("catch-up: {e:#}"));
    }
    if wanted("fleet")
        && let Err(e) = scenarios::fleet(&env, sizes, &mut results).await
    {
        failed.push(format!("fleet: {e:#}"));
    }
    if wanted("agent")
        && let Err(e) = scenarios::agent(&env, sizes, &mut results).await
    {
        failed.push(format!("agent: {e:#}"));
    }
    if wanted("hammer")
        && let Err(e) = scenarios::hammer(&env, sizes, &mut results).await
    {
        failed.push(format!("hammer: {e:#}"));
    }
    if wanted("memory")
        && let Err(e) = scenarios::office_memory(&env, sizes, &mut results).await
    {
        failed.push(format!("memory: {e:#}"));
    }
    if wanted("serve")
        && let Err(e) = scenarios::serve(&env, sizes, &mut results).await
    {
        failed.push(format!("serve: {e:#}"));
    }
    for f in &failed {
        results.notes.push(format!("FAILED {f}"));
    }
    results.failed = !failed.is_empty();
    Ok(results)
}

/// The results as a Markdown table.
pub fn table(results: &Results) -> String {
    let mut out =
        String::from("| scenario | ours | peer (same run) | ratio | goal | met |\n|---|---|---|---|---|---|\n");
    for l in &results.lines {
        let ratio = l.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into());
        let met = match l.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        // A `|` inside a cell would end it.
        let cell = |t: &str| t.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} | {} | {met} |",
            cell(&l.scenario),
            cell(&l.ours),
            cell(&l.peer),
            cell(&l.goal)
        );
    }
    out
}
