//! The office's own records in its database: `branch_synchronization` (Stoq's BranchSynchronization, with the
//! cursors and the agent's address), the sync log and the services' job claims. Every statement on these tables
//! lives here.

use anyhow::{Context, Result, bail};
use tokio_postgres::{Client, GenericClient, Row, Transaction};

/// The office's tables' migrations, in order (see `pgsync::migrate`).
const MIGRATIONS: &[&str] = &[OFFICE_V1, OFFICE_V2, OFFICE_V3, OFFICE_V4, OFFICE_V5, OFFICE_V6, OFFICE_V7];

/// When `serve` last ran each branch's daily verify.
const OFFICE_V7: &str =
    "ALTER TABLE branchsync.branch_synchronization ADD COLUMN IF NOT EXISTS last_verify_at timestamptz;";

/// Which `serve` process runs (or last ran) each branch's job: several services share one office database, a
/// job is claimed here before it starts, renewed while it runs, and a claim left unrenewed (its service died)
/// is taken over after the lease.
const OFFICE_V6: &str = "
CREATE TABLE IF NOT EXISTS branchsync.service_claim (
    branch text PRIMARY KEY,
    holder text NOT NULL,
    job text NOT NULL,
    claimed_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,
    finished_at timestamptz,
    ok boolean
);";

/// When `serve` last completed each branch's daily complete sync, so that one missed during downtime runs
/// once after it.
const OFFICE_V5: &str =
    "ALTER TABLE branchsync.branch_synchronization ADD COLUMN IF NOT EXISTS last_daily_at timestamptz;";

/// The first id of the branch's range that its current shop database holds the history from: the ids below it
/// were issued before a re-initialisation or a restore, and the shop may no longer hold those rows.
const OFFICE_V4: &str = "ALTER TABLE branchsync.branch_synchronization ADD COLUMN IF NOT EXISTS history_from bigint;";

/// Tables `branch reconfigure` added to what a shop receives and the office has not yet sent it whole: kept
/// until a push that sends them succeeds, so that a failed reconfigure is finished by any later sync.
const OFFICE_V3: &str = "ALTER TABLE branchsync.branch_synchronization ADD COLUMN IF NOT EXISTS pending_whole text[] NOT NULL DEFAULT '{}';";

/// The shop database each branch was initialised with (its `DbIdentity`), compared before every sync.
const OFFICE_V2: &str = "ALTER TABLE branchsync.branch_synchronization ADD COLUMN IF NOT EXISTS shop_identity text;";

const OFFICE_V1: &str = "
CREATE TABLE IF NOT EXISTS branchsync.branch_synchronization (
    branch text PRIMARY KEY,
    number bigint NOT NULL UNIQUE CHECK (number > 0),
    policy text NOT NULL,
    url text NOT NULL,
    username text NOT NULL,
    credential text NOT NULL,
    id_range bigint NOT NULL CHECK (id_range > 0),
    push_cursor text,
    pull_cursor text,
    timestamp timestamptz,
    initialised_at timestamptz,
    last_attempt timestamptz,
    last_error text
);
CREATE TABLE IF NOT EXISTS branchsync.sync_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    branch text NOT NULL,
    tbl text NOT NULL,
    direction text NOT NULL,
    rows bigint NOT NULL DEFAULT 0,
    bytes bigint,
    result text NOT NULL,
    message text
);
CREATE INDEX IF NOT EXISTS sync_log_branch ON branchsync.sync_log (branch, id);
";

/// Installs the office's tables (after `pgsync::schema::install`).
pub async fn install(client: &Client) -> Result<()> {
    pgsync::migrate::migrate(client, "office", MIGRATIONS).await.context("cannot create the office's sync tables")?;
    Ok(())
}

/// One branch as the office knows it.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Its name.
    pub name: String,
    /// Branch number; its id range starts at `number * id_range`.
    pub number: i64,
    /// The policy's name.
    pub policy: String,
    /// The agent's base URL.
    pub url: String,
    /// The agent user.
    pub username: String,
    /// Where the password is: `env:VAR` or `file:PATH`.
    pub credential: String,
    /// Size of the id range.
    pub id_range: i64,
    /// The office cursor the shop has applied, as last recorded.
    pub push_cursor: Option<String>,
    /// The shop cursor the office has applied.
    pub pull_cursor: Option<String>,
    /// Last successful sync.
    pub timestamp: Option<String>,
    /// When `branch init` completed.
    pub initialised_at: Option<String>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// The identity of the shop database the branch was initialised with (or re-bound to).
    pub shop_identity: Option<String>,
    /// Tables the shop newly receives that the next push sends whole (see `branch reconfigure`).
    pub pending_whole: Vec<String>,
    /// The first id of the range whose rows the shop database holds since its initialisation or re-binding;
    /// `None`: the whole range.
    pub history_from: Option<i64>,
    /// When `serve` last completed the branch's daily complete sync (RFC 3339, UTC).
    pub last_daily_at: Option<String>,
    /// When `serve` last ran the branch's daily verify (RFC 3339, UTC).
    pub last_verify_at: Option<String>,
    /// When the last sync attempt ended, successful or not (RFC 3339, UTC).
    pub last_attempt: Option<String>,
}

const COLUMNS: &str = "branch, number, policy, url, username, credential, id_range, push_cursor, pull_cursor, \
     to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     to_char(initialised_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), last_error, shop_identity, pending_whole, history_from, \
     to_char(last_daily_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     to_char(last_verify_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     to_char(last_attempt AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn branch(r: &Row) -> Branch {
    Branch {
        name: r.get(0),
        number: r.get(1),
        policy: r.get(2),
        url: r.get(3),
        username: r.get(4),
        credential: r.get(5),
        id_range: r.get(6),
        push_cursor: r.get(7),
        pull_cursor: r.get(8),
        timestamp: r.get(9),
        initialised_at: r.get(10),
        last_error: r.get(11),
        shop_identity: r.get(12),
        pending_whole: r.get(13),
        history_from: r.get(14),
        last_daily_at: r.get(15),
        last_verify_at: r.get(16),
        last_attempt: r.get(17),
    }
}

impl Branch {
    /// The first id of the branch's range.
    pub fn id_start(&self) -> i64 {
        self.number.saturating_mul(self.id_range)
    }

    /// The last id of the branch's range.
    pub fn id_end(&self) -> i64 {
        self.id_start().saturating_add(self.id_range - 1)
    }

    /// The agent password, read from where the credential reference points.
    pub fn password(&self) -> Result<String> {
        if let Some(var) = self.credential.strip_prefix("env:") {
            std::env::var(var).with_context(|| {
                format!("branch {}: environment variable {var} with the agent password is not set", self.name)
            })
        } else if let Some(path) = self.credential.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("branch {}: cannot read the password file {path}", self.name))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        } else {
            bail!("branch {}: credential {:?} must be env:VAR or file:PATH", self.name, self.credential)
        }
    }
}

/// Every branch, by name.
pub async fn branches(client: &impl GenericClient) -> Result<Vec<Branch>> {
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM branchsync.branch_synchronization ORDER BY branch"), &[])
        .await
        .context("cannot read the branches; has `office-controller init` run on this database?")?;
    Ok(rows.iter().map(branch).collect())
}

/// One branch by name.
pub async fn find(client: &impl GenericClient, name: &str) -> Result<Branch> {
    find_opt(client, name)
        .await?
        .with_context(|| format!("no branch named {name}, see `office-controller branch list`"))
}

/// One branch by name, `None` when there is none.
pub async fn find_opt(client: &impl GenericClient, name: &str) -> Result<Option<Branch>> {
    let row = client
        .query_opt(&format!("SELECT {COLUMNS} FROM branchsync.branch_synchronization WHERE branch = $1"), &[&name])
        .await
        .context("cannot read the branches; has `office-controller init` run on this database?")?;
    Ok(row.map(|r| branch(&r)))
}

/// One sync-log row.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    /// The branch.
    pub branch: &'a str,
    /// `schema.table`, or `*` for the whole exchange.
    pub table: &'a str,
    /// `pull`, `push`, `sync` or `init`.
    pub direction: &'a str,
    /// Rows moved.
    pub rows: i64,
    /// Compressed bytes, when known.
    pub bytes: Option<i64>,
    /// `ok`, `error` or `fallback`.
    pub result: &'a str,
    /// What an operator should know.
    pub message: &'a str,
}

/// The longest message kept in the sync log or as a branch's last error: it may hold a peer's text.
const MAX_MESSAGE_CHARS: usize = 2000;

/// Appends a sync-log row.
pub async fn log(client: &impl GenericClient, e: LogEntry<'_>) -> Result<()> {
    let message = protocol::text::capped(e.message, MAX_MESSAGE_CHARS);
    client
        .execute(
            "INSERT INTO branchsync.sync_log (branch, tbl, direction, rows, bytes, result, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&e.branch, &e.table, &e.direction, &e.rows, &e.bytes, &e.result, &message],
        )
        .await
        .context("cannot write the sync log")?;
    Ok(())
}

/// A new branch's record.
#[derive(Debug, Clone, Copy)]
pub struct NewBranch<'a> {
    /// Its name.
    pub name: &'a str,
    /// The policy's name.
    pub policy: &'a str,
    /// The agent's base URL.
    pub url: &'a str,
    /// The agent user.
    pub username: &'a str,
    /// Where the password is.
    pub credential: &'a str,
    /// Size of the id range.
    pub id_range: i64,
}

/// The number the next branch gets by default.
pub async fn next_number(client: &impl GenericClient) -> Result<i64> {
    Ok(client
        .query_one("SELECT coalesce(max(number), 0) + 1 FROM branchsync.branch_synchronization", &[])
        .await
        .context("cannot read the branches; has `office-controller init` run on this database?")?
        .get(0))
}

/// Records a new branch; false when its name or number is taken.
pub async fn add(client: &impl GenericClient, b: NewBranch<'_>, number: i64) -> Result<bool> {
    let inserted = client
        .execute(
            "INSERT INTO branchsync.branch_synchronization (branch, number, policy, url, username, credential, id_range) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[&b.name, &number, &b.policy, &b.url, &b.username, &b.credential, &b.id_range],
        )
        .await
        .context("cannot record the branch")?;
    Ok(inserted == 1)
}

/// What `branch set` changes of a branch; `None` keeps the recorded value.
#[derive(Debug, Clone, Copy, Default)]
pub struct BranchChange<'a> {
    /// The agent's base URL.
    pub url: Option<&'a str>,
    /// The agent user.
    pub username: Option<&'a str>,
    /// Where the password is.
    pub credential: Option<&'a str>,
    /// The policy's name.
    pub policy: Option<&'a str>,
}

/// Changes a branch's connection or policy name, nothing of its sync state; false when there is no branch of
/// that name.
pub async fn update(client: &impl GenericClient, name: &str, c: BranchChange<'_>) -> Result<bool> {
    let updated = client
        .execute(
            "UPDATE branchsync.branch_synchronization SET url = coalesce($2, url), username = coalesce($3, username), \
             credential = coalesce($4, credential), policy = coalesce($5, policy) WHERE branch = $1",
            &[&name, &c.url, &c.username, &c.credential, &c.policy],
        )
        .await
        .context("cannot change the branch")?;
    Ok(updated == 1)
}

/// Forgets a branch; false when there is none of that name.
pub async fn remove(client: &impl GenericClient, name: &str) -> Result<bool> {
    let removed = client
        .execute("DELETE FROM branchsync.branch_synchronization WHERE branch = $1", &[&name])
        .await
        .context("cannot remove the branch")?;
    Ok(removed == 1)
}

/// Records the shop cursor the office has applied, in the transaction that applied the rows behind it.
pub async fn set_pull_cursor(tx: &Transaction<'_>, branch: &str, cursor: &str) -> Result<()> {
    tx.execute("UPDATE branchsync.branch_synchronization SET pull_cursor = $2 WHERE branch = $1", &[&branch, &cursor])
        .await
        .context("cannot record the pull cursor")?;
    Ok(())
}

/// Records the office cursor the shop has applied (after its `sql_finish` committed, or when it lacked nothing).
pub async fn set_push_cursor(client: &impl GenericClient, branch: &str, cursor: &str) -> Result<()> {
    client
        .execute("UPDATE branchsync.branch_synchronization SET push_cursor = $2 WHERE branch = $1", &[&branch, &cursor])
        .await
        .context("cannot record the push cursor")?;
    Ok(())
}

/// Records the shop database a branch syncs with, after `branch init`, a sync with `--rebind`, or the first
/// sync of a branch initialised before identities were recorded.
pub async fn set_shop_identity(client: &impl GenericClient, branch: &str, identity: &str) -> Result<()> {
    client
        .execute(
            "UPDATE branchsync.branch_synchronization SET shop_identity = $2 WHERE branch = $1",
            &[&branch, &identity],
        )
        .await
        .context("cannot record the shop's database identity")?;
    Ok(())
}

/// Records the tables the next push must send the shop whole (`branch reconfigure`), or clears them (empty)
/// once a push sent them.
pub async fn set_pending_whole(client: &impl GenericClient, branch: &str, tables: &[String]) -> Result<()> {
    client
        .execute(
            "UPDATE branchsync.branch_synchronization SET pending_whole = $2 WHERE branch = $1",
            &[&branch, &tables],
        )
        .await
        .context("cannot record the tables to load whole")?;
    Ok(())
}

/// Records from which id of its range the branch's shop holds its history (after `branch init` on a range the
/// office holds rows of, or a restore): `verify` compares the shop's own rows from there on.
pub async fn set_history_from(client: &impl GenericClient, branch: &str, id: i64) -> Result<()> {
    client
        .execute("UPDATE branchsync.branch_synchronization SET history_from = $2 WHERE branch = $1", &[&branch, &id])
        .await
        .context("cannot record where the shop's history starts")?;
    Ok(())
}

/// Records that the branch's daily complete sync has run (`serve`).
pub async fn set_last_daily(client: &impl GenericClient, branch: &str) -> Result<()> {
    client
        .execute("UPDATE branchsync.branch_synchronization SET last_daily_at = now() WHERE branch = $1", &[&branch])
        .await
        .context("cannot record the daily sync")?;
    Ok(())
}

/// Records that the branch's daily verify has run (`serve`).
pub async fn set_last_verify(client: &impl GenericClient, branch: &str) -> Result<()> {
    client
        .execute("UPDATE branchsync.branch_synchronization SET last_verify_at = now() WHERE branch = $1", &[&branch])
        .await
        .context("cannot record the daily verify")?;
    Ok(())
}

/// Records a completed `branch init`: the office cursor of the full load, no pull cursor yet, and the identity
/// of the shop database it loaded.
pub async fn mark_initialised(
    client: &impl GenericClient,
    branch: &str,
    push_cursor: &str,
    shop_identity: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE branchsync.branch_synchronization SET push_cursor = $2, pull_cursor = NULL, initialised_at = now(),
                shop_identity = NULLIF($3, ''), pending_whole = '{}' WHERE branch = $1",
            &[&branch, &push_cursor, &shop_identity],
        )
        .await
        .context("cannot record the initialisation")?;
    Ok(())
}

/// Records the end of an attempt: a success clears the last error, a failure keeps it.
pub async fn mark_attempt(client: &impl GenericClient, branch: &str, error: Option<&str>) -> Result<()> {
    let sql = match error {
        None => {
            "UPDATE branchsync.branch_synchronization SET timestamp = now(), last_attempt = now(), last_error = NULL WHERE branch = $1 AND $2::text IS NULL"
        }
        Some(_) => {
            "UPDATE branchsync.branch_synchronization SET last_attempt = now(), last_error = $2 WHERE branch = $1"
        }
    };
    let error = error.map(|e| protocol::text::capped(e, MAX_MESSAGE_CHARS));
    client.execute(sql, &[&branch, &error]).await.context("cannot record the attempt")?;
    Ok(())
}

/// Seconds since the branch's last successful sync.
pub async fn lag_seconds(client: &impl GenericClient, branch: &str) -> Result<Option<f64>> {
    Ok(client
        .query_one(
            "SELECT extract(epoch FROM now() - timestamp)::float8 FROM branchsync.branch_synchronization WHERE branch = $1",
            &[&branch],
        )
        .await
        .context("cannot read the branch's lag")?
        .get(0))
}

/// One sync-log row as read back.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// Its id, increasing.
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// The branch.
    pub branch: String,
    /// The table, or `*`.
    pub table: String,
    /// The direction.
    pub direction: String,
    /// Rows moved.
    pub rows: i64,
    /// Compressed bytes, when known.
    pub bytes: Option<i64>,
    /// The result.
    pub result: String,
    /// The message.
    pub message: String,
}

/// The sync log, newest first.
pub async fn read_log(client: &impl GenericClient, branch: Option<&str>, limit: i64) -> Result<Vec<LogRow>> {
    let rows = client
        .query(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), branch, tbl, direction, rows, bytes, result, coalesce(message, '') \
             FROM branchsync.sync_log WHERE $1::text IS NULL OR branch = $1 ORDER BY id DESC LIMIT $2",
            &[&branch, &limit],
        )
        .await
        .context("cannot read the sync log")?;
    Ok(rows
        .iter()
        .map(|r| LogRow {
            id: r.get(0),
            at: r.get(1),
            branch: r.get(2),
            table: r.get(3),
            direction: r.get(4),
            rows: r.get(5),
            bytes: r.get(6),
            result: r.get(7),
            message: r.get(8),
        })
        .collect())
}

/// A job's claim, as `serve` records it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The branch.
    pub branch: String,
    /// The service process (`host:pid:nonce`).
    pub holder: String,
    /// `incremental`, `daily` or `verify`.
    pub job: String,
    /// When it was claimed (RFC 3339, UTC).
    pub claimed_at: String,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<String>,
    /// Whether it succeeded, once ended.
    pub ok: Option<bool>,
    /// Seconds since its service last renewed it.
    pub renewed_seconds_ago: f64,
}

/// Claims the branch's next job for `holder`: true unless another service holds a claim on it that it renewed
/// within `lease_seconds`. A claim `holder` itself left unfinished (its release failed with the office
/// database) is taken back: the service keeps its own jobs apart in memory (`Service::running`).
pub async fn claim(
    client: &impl GenericClient,
    branch: &str,
    holder: &str,
    job: &str,
    lease_seconds: f64,
) -> Result<bool> {
    let claimed = client
        .execute(
            "INSERT INTO branchsync.service_claim AS c (branch, holder, job, claimed_at, renewed_at) \
             VALUES ($1, $2, $3, now(), now()) \
             ON CONFLICT (branch) DO UPDATE SET holder = excluded.holder, job = excluded.job, claimed_at = now(), \
                 renewed_at = now(), finished_at = NULL, ok = NULL \
             WHERE c.finished_at IS NOT NULL OR c.holder = $2 OR c.renewed_at < now() - make_interval(secs => $4)",
            &[&branch, &holder, &job, &lease_seconds],
        )
        .await
        .context("cannot claim the branch's job")?;
    Ok(claimed == 1)
}

/// Renews `holder`'s claims of the jobs it is running, those of `branches`; a claim it left unfinished
/// otherwise is not renewed, so that it lapses.
pub async fn renew_claims(client: &impl GenericClient, holder: &str, branches: &[String]) -> Result<u64> {
    client
        .execute(
            "UPDATE branchsync.service_claim SET renewed_at = now() \
             WHERE holder = $1 AND finished_at IS NULL AND branch = ANY($2)",
            &[&holder, &branches],
        )
        .await
        .context("cannot renew the service's claims")
}

/// Ends `holder`'s claim of the branch's job with its result; nothing when another service took it over.
pub async fn release(client: &impl GenericClient, branch: &str, holder: &str, ok: bool) -> Result<()> {
    client
        .execute(
            "UPDATE branchsync.service_claim SET finished_at = now(), ok = $3 WHERE branch = $1 AND holder = $2",
            &[&branch, &holder, &ok],
        )
        .await
        .context("cannot end the job's claim")?;
    Ok(())
}

/// Every branch's current or last claim.
pub async fn claims(client: &impl GenericClient) -> Result<Vec<Claim>> {
    let rows = client
        .query(
            "SELECT branch, holder, job, to_char(claimed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ok, \
                    extract(epoch FROM now() - renewed_at)::float8 \
             FROM branchsync.service_claim ORDER BY branch",
            &[],
        )
        .await
        .context("cannot read the services' claims")?;
    Ok(rows
        .iter()
        .map(|r| Claim {
            branch: r.get(0),
            holder: r.get(1),
            job: r.get(2),
            claimed_at: r.get(3),
            finished_at: r.get(4),
            ok: r.get(5),
            renewed_seconds_ago: r.get(6),
        })
        .collect())
}
