//! The controller's configuration: a TOML file, every key overridable by `OFFICE_CONTROLLER__KEY` (nested keys
//! joined by `__`). Named policies are checked against the office database when a command needs them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use pgsync::{Catalog, Rule};
use protocol::payload::TableName;
use protocol::policy::{Assignment, Policy as TablePolicy};
use serde::Deserialize;

/// Everything the controller needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The office database.
    pub database_url: String,
    /// Named policies, e.g. `[policies.retail]`.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// How syncs run.
    #[serde(default)]
    pub sync: SyncConfig,
    /// When `serve` runs them.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// The service's listener: TLS, office users, limits.
    #[serde(default)]
    pub service: ServiceConfig,
}

/// `[service]`: what `office-controller serve` answers on its listener (the JSON API, `/metrics`, the console)
/// and who may ask.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// PEM certificate chain for HTTPS; with `tls_key`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for HTTPS; with `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Office users, e.g. `[[service.users]]`.
    pub users: Vec<OfficeUser>,
    /// Longest wait for a request's head, in seconds.
    pub header_read_seconds: u64,
    /// A connection idle this long is closed, in seconds.
    pub idle_seconds: u64,
    /// Connections open at once.
    pub max_connections: usize,
    /// Password verifications (argon2) at once.
    pub auth_concurrency: usize,
    /// Failed logins from one address within the window that lock it out for `auth_lockout_seconds`.
    pub auth_failures_per_address: u32,
    /// Failed logins for one user within the window after which its failed addresses wait.
    pub auth_failures_per_user: u32,
    /// The window failed logins are counted in, in seconds.
    pub auth_failure_window_seconds: u64,
    /// How long a lockout lasts, in seconds.
    pub auth_lockout_seconds: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            tls_cert: None,
            tls_key: None,
            users: Vec::new(),
            header_read_seconds: 10,
            idle_seconds: 60,
            max_connections: 256,
            auth_concurrency: 2,
            auth_failures_per_address: 10,
            auth_failures_per_user: 30,
            auth_failure_window_seconds: 60,
            auth_lockout_seconds: 300,
        }
    }
}

/// One office user of the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeUser {
    /// The login.
    pub name: String,
    /// An argon2 PHC string (`office-controller hash-password` prints one); never a clear password.
    pub password_hash: String,
    /// What the user may do.
    pub role: OfficeRole,
}

/// What an office user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OfficeRole {
    /// Read: branches, log, conflicts, metrics.
    Viewer,
    /// Read, and act: sync now, complete sync, verify.
    Operator,
}

/// `[schedule]`: when `office-controller serve` syncs each branch. Read by [`crate::schedule::Schedule`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Seconds between two incremental syncs of a branch (each branch at its own phase within it, so that a
    /// thousand shops do not start in the same second).
    pub interval_seconds: u64,
    /// Wall-clock time (`HH:MM`) of the daily complete sync (`sync --full`) in `time_zone`.
    pub daily_at: String,
    /// Wall-clock time of a daily `verify`; none by default.
    pub verify_at: Option<String>,
    /// IANA time zone of the daily times, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// Longest run of one job, in seconds.
    pub job_timeout_seconds: u64,
    /// First pause after a failed sync of a branch, doubled per failure up to the interval's ten times.
    pub retry_base_seconds: u64,
    /// How long a running job's claim stays valid without its service renewing it: a service that died is
    /// taken over by another after this long.
    pub claim_lease_seconds: u64,
    /// Per-branch overrides, e.g. `[schedule.branches.shop7]`.
    pub branches: BTreeMap<String, BranchSchedule>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            interval_seconds: 300,
            daily_at: "07:00".into(),
            verify_at: None,
            time_zone: "UTC".into(),
            job_timeout_seconds: 1800,
            retry_base_seconds: 30,
            claim_lease_seconds: 60,
            branches: BTreeMap::new(),
        }
    }
}

/// One branch's schedule overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BranchSchedule {
    /// Its own interval (a shop on a slow line syncs less often).
    pub interval_seconds: Option<u64>,
    /// Not synced at all while paused.
    pub paused: bool,
    /// The recurring pull of the shop's changes; off leaves only the daily complete sync.
    pub pull: bool,
    /// The recurring push of the office's changes; off leaves only the daily complete sync.
    pub push: bool,
}

impl Default for BranchSchedule {
    fn default() -> Self {
        BranchSchedule { interval_seconds: None, paused: false, pull: true, push: true }
    }
}

/// One named policy as written in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Office → shop tables.
    #[serde(default)]
    pub from_source: Vec<String>,
    /// Shop → office tables.
    #[serde(default)]
    pub from_target: Vec<String>,
    /// Both ways.
    #[serde(default)]
    pub both: Vec<String>,
    /// Office → shop at branch initialisation.
    #[serde(default)]
    pub initial: Vec<String>,
    /// Default conflict rule for `both` tables.
    #[serde(default = "default_rule")]
    pub conflict: String,
    /// Per-table conflict rules.
    #[serde(default)]
    pub conflicts: BTreeMap<String, String>,
    /// The timestamp column that `newer-wins` compares.
    #[serde(default = "default_newer_column")]
    pub newer_column: String,
    /// Which rows of `both` tables a shop may delete: `any` (customers are shared, a shop may remove one for
    /// the chain) or `own` (only rows in its id range, those it created).
    #[serde(default = "default_both_deletes")]
    pub both_deletes: String,
}

fn default_both_deletes() -> String {
    "any".into()
}

fn default_rule() -> String {
    "office-wins".into()
}

fn default_newer_column() -> String {
    "updated_at".into()
}

/// How syncs run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Branches synced at once.
    pub concurrency: usize,
    /// Timeout of one call to an agent, in seconds.
    pub timeout_seconds: u64,
    /// Retries of a call that failed for a transient reason (network, agent busy).
    pub retries: u32,
    /// First pause between retries, doubled each time, in milliseconds.
    pub backoff_ms: u64,
    /// Uncompressed bytes per uploaded chunk.
    pub chunk_bytes: usize,
    /// Size of each branch's id range; branch N owns `N * id_range ..= (N + 1) * id_range - 1`.
    pub id_range: i64,
    /// Longest time one branch's sync may take, retries included, in seconds; then it stops and says so (what
    /// was applied stays applied, with its cursor).
    pub deadline_seconds: u64,
    /// Largest answer body read from an agent, in bytes (a `diff` answer is one bounded chunk, base64 in XML).
    pub max_answer_bytes: usize,
    /// Largest decompressed `diff` chunk, in bytes; the agents' `chunk_decompressed_bytes` default too.
    pub max_chunk_bytes: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            concurrency: 8,
            timeout_seconds: 300,
            retries: 3,
            backoff_ms: 500,
            chunk_bytes: 4 << 20,
            id_range: 1_000_000_000_000,
            deadline_seconds: 3600,
            max_answer_bytes: 64 << 20,
            max_chunk_bytes: 32 << 20,
        }
    }
}

/// A policy resolved against the office database: the tables of [`protocol::policy::Policy`] and the office's
/// own rules for them.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// Its tables by direction.
    pub tables: TablePolicy,
    /// Conflict rule per `both` table.
    pub rules: BTreeMap<TableName, Rule>,
    /// The column `newer-wins` compares.
    pub newer_column: String,
    /// Whether a shop may delete only the rows of `both` tables in its own id range.
    pub own_both_deletes: bool,
}

impl Policy {
    /// The policy as handed to a shop with `configure`.
    pub fn assignment(&self, branch: &str, id_range: i64) -> Assignment {
        Assignment { branch: branch.into(), policy: self.tables.clone(), id_range }
    }

    /// This policy's rules over other tables: the policy a shop still holds while the office's changed (the
    /// sync before `branch reconfigure` or a forced `branch init` pulls with it).
    pub fn with_tables(&self, tables: &TablePolicy) -> Policy {
        Policy { tables: tables.clone(), ..self.clone() }
    }
}

impl PolicyConfig {
    /// A policy's tables as the configuration writes them, with the default rules (the demo, the benchmarks and
    /// the tests write the sample retail policy this way).
    pub fn with_tables(tables: &TablePolicy) -> PolicyConfig {
        let names = |l: &[TableName]| l.iter().map(|t| t.to_string()).collect();
        PolicyConfig {
            from_source: names(&tables.from_source),
            from_target: names(&tables.from_target),
            both: names(&tables.both),
            initial: names(&tables.initial),
            conflict: default_rule(),
            conflicts: BTreeMap::new(),
            newer_column: default_newer_column(),
            both_deletes: default_both_deletes(),
        }
    }
}

impl Config {
    /// Loads `path` and applies `OFFICE_CONTROLLER__*` environment overrides.
    pub fn load(path: &Path) -> Result<Config> {
        let config: Config = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("OFFICE_CONTROLLER")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        if config.sync.concurrency == 0
            || config.sync.id_range <= 0
            || config.sync.chunk_bytes == 0
            || config.sync.deadline_seconds == 0
            || config.sync.max_answer_bytes == 0
            || config.sync.max_chunk_bytes == 0
        {
            bail!(
                "invalid [sync] settings: concurrency, id_range, chunk_bytes, deadline_seconds, max_answer_bytes and max_chunk_bytes must be greater than zero"
            );
        }
        let service = &config.service;
        if service.tls_cert.is_some() != service.tls_key.is_some() {
            bail!("invalid [service]: set both tls_cert and tls_key, or neither");
        }
        for user in &service.users {
            service::auth::check_hash(&user.password_hash).map_err(|e| {
                anyhow::anyhow!(
                    "invalid [[service.users]] {}: password_hash is not an argon2 PHC string ({e}), make one with `office-controller hash-password`",
                    user.name
                )
            })?;
        }
        if service.max_connections == 0 || service.idle_seconds == 0 || service.header_read_seconds == 0 {
            bail!("invalid [service]: max_connections, idle_seconds and header_read_seconds must be greater than zero");
        }
        Ok(config)
    }

    /// The named policy, checked against the office database: no table in two lists, every table present with
    /// a primary key, no foreign key to a table that does not reach every side where the referencing table is
    /// written, known conflict rules, and the `newer-wins` column present.
    pub async fn policy(&self, name: &str, office: &tokio_postgres::Client) -> Result<Policy> {
        let p = self
            .policies
            .get(name)
            .with_context(|| format!("no policy named {name} in the configuration, add [policies.{name}]"))?;
        let parse = |list: &[String]| -> Result<Vec<TableName>> {
            list.iter()
                .map(|t| TableName::parse(t).with_context(|| format!("policy {name}: {t:?} is not a table name")))
                .collect()
        };
        let tables = TablePolicy {
            from_source: parse(&p.from_source)?,
            from_target: parse(&p.from_target)?,
            both: parse(&p.both)?,
            initial: parse(&p.initial)?,
        };
        tables.check().with_context(|| format!("policy {name}"))?;
        let seen = tables.tables();
        let catalog = Catalog::load(office, &tables.all()).await.with_context(|| format!("policy {name}"))?;
        // Tables that exist on the side receiving a row of each list.
        let at_shop = tables.shop_receives();
        for table in catalog.tables() {
            let sent_to_shops = !tables.from_target.contains(&table.name);
            for fk in &table.foreign_keys {
                if fk.references == table.name {
                    continue;
                }
                if !seen.contains(&fk.references) {
                    bail!(
                        "policy {name}: table {} references {}, which is in no list: add it to the policy",
                        table.name,
                        fk.references
                    );
                }
                if sent_to_shops && !at_shop.contains(&fk.references) {
                    bail!(
                        "policy {name}: table {} goes to the shops but references {}, which only flows from the shops: move one of them",
                        table.name,
                        fk.references
                    );
                }
            }
        }
        let default = Rule::parse(&p.conflict).with_context(|| {
            format!("policy {name}: unknown conflict rule {:?}, use office-wins, shop-wins or newer-wins", p.conflict)
        })?;
        let mut rules: BTreeMap<TableName, Rule> = tables.both.iter().map(|t| (t.clone(), default)).collect();
        for (table, rule) in &p.conflicts {
            let t = TableName::parse(table).with_context(|| format!("policy {name}: {table:?} is not a table name"))?;
            if !tables.both.contains(&t) {
                bail!("policy {name}: conflict rule for {t}, which is not a `both` table");
            }
            let r =
                Rule::parse(rule).with_context(|| format!("policy {name}: unknown conflict rule {rule:?} for {t}"))?;
            rules.insert(t, r);
        }
        for (t, r) in &rules {
            if *r == Rule::NewerWins && catalog.get(t).and_then(|i| i.column_type(&p.newer_column)).is_none() {
                bail!(
                    "policy {name}: newer-wins on {t} needs a column {} to compare, add it or set newer_column",
                    p.newer_column
                );
            }
        }
        let own_both_deletes = match p.both_deletes.as_str() {
            "any" => false,
            "own" => true,
            other => bail!("policy {name}: both_deletes = {other:?} is not known, use \"any\" or \"own\""),
        };
        Ok(Policy { name: name.into(), tables, rules, newer_column: p.newer_column.clone(), own_both_deletes })
    }
}

/// A commented example configuration.
pub const EXAMPLE_CONFIG: &str = r#"# office-controller configuration. Every key can be overridden as OFFICE_CONTROLLER__KEY
# (nested keys joined by "__", e.g. OFFICE_CONTROLLER__SYNC__CONCURRENCY=16).
database_url = "host=/var/run/postgresql dbname=office user=branchsync"

[policies.retail]
from_source = ["product", "service"]
from_target = ["sale", "sale_item", "payment"]
both = ["person"]
initial = ["parameter"]
conflict = "office-wins"          # office-wins | shop-wins | newer-wins
newer_column = "updated_at"       # compared by newer-wins
both_deletes = "any"              # any | own: which rows of `both` tables a shop may delete (own: those in its id range)

[policies.retail.conflicts]
# person = "newer-wins"

[sync]
concurrency = 8
timeout_seconds = 300
retries = 3
backoff_ms = 500
chunk_bytes = 4194304
id_range = 1000000000000
deadline_seconds = 3600
max_answer_bytes = 67108864       # largest answer body read from an agent
max_chunk_bytes = 33554432        # largest decompressed diff chunk (gzip bombs are refused beyond it)

[schedule]                        # when `office-controller serve` runs the syncs
interval_seconds = 300            # incremental sync of each branch, each at its own phase within the interval
daily_at = "07:00"                # the daily complete sync (sync --full), wall-clock time in time_zone
# verify_at = "07:30"             # a daily verify
time_zone = "UTC"                 # IANA name, e.g. "Europe/Paris"
job_timeout_seconds = 1800
retry_base_seconds = 30           # pause after a failure, doubled per failure
claim_lease_seconds = 60          # a job of a service that stopped renewing its claim is taken over after this

# [schedule.branches.shop7]       # a shop on a slow line
# interval_seconds = 3600
# paused = false
# pull = true                     # false: no recurring pull, only the daily complete sync
# push = true

[service]                         # the listener of `office-controller serve`: JSON API, /metrics
# tls_cert = "/etc/branchsync/office.crt"   # HTTPS with both set
# tls_key = "/etc/branchsync/office.key"
# [[service.users]]               # make a hash with: echo -n 'secret' | office-controller hash-password
# name = "ops"
# password_hash = "$argon2id$v=19$..."
# role = "operator"               # viewer: reads; operator: also sync now, complete sync, verify
"#;
