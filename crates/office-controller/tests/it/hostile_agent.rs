//! The real controller against a fake agent that answers with hostile content: a fault string of half a million
//! characters, a junk cursor of a megabyte, another branch's sales, a gzip bomb and an oversized answer. The sync fails with a clear error, nothing is applied or recorded as
//! progress, every stored and rendered text is bounded, and nothing panics.

use dxr::{Fault, FaultResponse, MethodResponse};
use office_controller::commands::{self, sync::SyncArgs};
use office_controller::config::{Config, PolicyConfig, SyncConfig};
use protocol::wire::{Answer, DiffAnswer};
use testbed::sample::{self, policy};

/// What the fake agent answers to `diff`.
#[derive(Clone)]
enum Diff {
    Fault(String),
    Answer(DiffAnswer),
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// Serves `status` as a shop configured as shop1 with the retail policy, and `diff` as told.
async fn fake_agent(diff: Diff) -> String {
    let status = testbed::fake_agent::configured_status("shop1", policy::retail(), SyncConfig::default().id_range);
    let status = MethodResponse { value: status.into_value() }.to_xml().unwrap();
    testbed::fake_agent::serve(move |request| {
        let xml = if request.contains("<methodName>status</methodName>") {
            status.clone()
        } else {
            match &diff {
                Diff::Fault(message) => FaultResponse { fault: Fault::new(300, message.clone()) }.to_xml().unwrap(),
                Diff::Answer(answer) => MethodResponse { value: answer.clone().into_value() }.to_xml().unwrap(),
            }
        };
        format!("<?xml version=\"1.0\"?>\n{xml}")
    })
    .await
    .unwrap()
}

/// An office database with one initialised branch pointing at `base`.
async fn office_with_branch(prefix: &str, base: &str) -> (Config, tokio_postgres::Client) {
    let url = testbed::shared_cluster().create_database(prefix).await.unwrap();
    let office = pgsync::connect(&url).await.unwrap();
    sample::create_schema(&office).await.unwrap();
    let config = Config {
        database_url: url,
        policies: [("retail".to_string(), PolicyConfig::with_tables(&policy::retail()))].into(),
        sync: SyncConfig { retries: 0, timeout_seconds: 20, ..SyncConfig::default() },
        schedule: Default::default(),
        service: Default::default(),
    };
    assert!(commands::init::run(&config).await.unwrap().ok);
    let password = std::env::temp_dir().join(format!("branchsync-{prefix}-password"));
    std::fs::write(&password, "secret").unwrap();
    let add = commands::branch_add::AddArgs {
        name: "shop1".into(),
        url: base.into(),
        user: "office".into(),
        password_env: None,
        password_file: Some(password.display().to_string()),
        policy: "retail".into(),
        number: Some(1),
    };
    assert!(commands::branch_add::run(&config, add).await.unwrap().ok);
    office_controller::records::mark_initialised(&office, "shop1", "", "").await.unwrap();
    (config, office)
}

/// The office's pull as the controller configures it, with the given caps on answers and chunks.
fn capped(config: &Config, max_answer_bytes: usize, max_chunk_bytes: usize) -> Config {
    Config { sync: SyncConfig { max_answer_bytes, max_chunk_bytes, ..config.sync.clone() }, ..config.clone() }
}

async fn sync(config: &Config) -> commands::Output {
    let args = SyncArgs { branches: vec!["shop1".into()], all: false, full: false, dry_run: false, rebind: false };
    commands::sync::run(config, args).await.unwrap()
}

#[tokio::test]
async fn a_half_million_character_fault_is_capped_everywhere_and_nothing_panics() {
    let base = fake_agent(Diff::Fault("x".repeat(500_000))).await;
    let (config, office) = office_with_branch("hostile_fault", &base).await;
    let out = sync(&config).await;
    assert!(!out.ok);
    assert!(out.text.lines().all(|l| l.chars().count() < 1000), "the summary is bounded");
    let longest: i32 = office
        .query_one("SELECT max(length(message)) FROM branchsync.sync_log WHERE branch = 'shop1'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(longest <= 2003, "{longest}");
    let last_error: String = office
        .query_one("SELECT last_error FROM branchsync.branch_synchronization WHERE branch = 'shop1'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(last_error.chars().count() <= 2003 && last_error.contains("fault 300"), "{}", last_error.len());
    // Still usable: the log renders.
    let log = commands::log::run(&config, commands::log::LogArgs { branch: None, limit: 10 }).await.unwrap();
    assert!(log.ok);
}

async fn pull_cursor(office: &tokio_postgres::Client) -> Option<String> {
    office
        .query_one("SELECT pull_cursor FROM branchsync.branch_synchronization WHERE branch = 'shop1'", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_junk_cursor_is_refused_and_never_recorded_as_the_pull_cursor() {
    let answer = DiffAnswer { data: gzip(""), cursor: "j".repeat(1 << 20), more: false };
    let base = fake_agent(Diff::Answer(answer)).await;
    let (config, office) = office_with_branch("hostile_cursor", &base).await;
    let out = sync(&config).await;
    assert!(!out.ok, "{}", out.text);
    assert_eq!(pull_cursor(&office).await, None);
    // Short junk that is simply not a cursor is refused the same way.
    let answer = DiffAnswer { data: gzip(""), cursor: "not-a-cursor".into(), more: false };
    let base = fake_agent(Diff::Answer(answer)).await;
    office.execute("UPDATE branchsync.branch_synchronization SET url = $1", &[&base]).await.unwrap();
    assert!(!sync(&config).await.ok);
    assert_eq!(pull_cursor(&office).await, None);
}

/// The office's sales, for before-and-after comparisons.
async fn sales(office: &tokio_postgres::Client) -> Vec<(i64, String)> {
    office
        .query("SELECT id, total::text FROM sale ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_shop_cannot_rewrite_or_delete_another_branchs_sales_and_nothing_is_applied() {
    let (config, office) = office_with_branch("hostile_owner", &fake_agent(Diff::Fault("unused".into())).await).await;
    // Branch 2's sales (ids from 2000000000000) and the office's own (small ids) are already at the office.
    office
        .batch_execute(
            "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES
               (2000000000001, now(), 10, 'done', gen_random_uuid()),
               (2000000000002, now(), 20, 'done', gen_random_uuid()),
               (5, now(), 30, 'done', gen_random_uuid());
             INSERT INTO sale_item (sale_id, line_no, quantity, unit_price) VALUES (2000000000002, 1, 1, 20);",
        )
        .await
        .unwrap();
    let before = sales(&office).await;
    let items =
        || async { office.query_one("SELECT count(*), sum(quantity)::text FROM sale_item", &[]).await.unwrap() };
    let items_before: (i64, String) = {
        let r = items().await;
        (r.get(0), r.get(1))
    };
    let row = |id: i64, total: i64| {
        format!(
            "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES ({id}, '2026-12-03 10:00:00+00', {total}, 'done', '00000000-0000-0000-0000-00000000000{}') ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total;\n",
            id % 10
        )
    };
    // Each sent by branch 1 (ids 1000000000000 to 1999999999999), each with one legitimate sale first.
    let own = row(1000000000001, 1);
    let hostile = [
        ("another branch's sale rewritten", format!("{own}{}", row(2000000000002, 999))),
        ("another branch's sale deleted", format!("{own}DELETE FROM sale WHERE id = 2000000000001;\n")),
        ("the office's own sale rewritten", format!("{own}{}", row(5, 999))),
        (
            "another branch's sale line rewritten",
            format!(
                "{own}INSERT INTO sale_item (sale_id, line_no, quantity, unit_price) VALUES (2000000000002, 1, 99, 20) ON CONFLICT (sale_id, line_no) DO UPDATE SET quantity = EXCLUDED.quantity;\n"
            ),
        ),
    ];
    let cursor = "bs1/1/2/ab/3:4:".to_string();
    for (what, sql) in hostile {
        let answer = DiffAnswer { data: gzip(&sql), cursor: cursor.clone(), more: false };
        let base = fake_agent(Diff::Answer(answer)).await;
        office.execute("UPDATE branchsync.branch_synchronization SET url = $1", &[&base]).await.unwrap();
        let log_before: i64 = office.query_one("SELECT count(*) FROM branchsync.sync_log", &[]).await.unwrap().get(0);
        let out = sync(&config).await;
        assert!(!out.ok, "{what}: {}", out.text);
        assert_eq!(sales(&office).await, before, "{what}: nothing applied, not even the branch's own sale");
        let now: (i64, String) = {
            let r = items().await;
            (r.get(0), r.get(1))
        };
        assert_eq!(now, items_before, "{what}");
        assert_eq!(pull_cursor(&office).await, None, "{what}: the pull cursor stays");
        let logged: Vec<String> = office
            .query("SELECT message FROM branchsync.sync_log WHERE id > $1 AND result = 'error'", &[&log_before])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            logged.iter().any(|m| m.contains("public.sale") && m.contains("20000000000") || m.contains("(5)")),
            "{what}: the log names the table and key: {logged:?}"
        );
    }

    // The branch's own sale alone goes through: the check refuses what is not its own, not everything.
    let answer = DiffAnswer { data: gzip(&own), cursor: cursor.clone(), more: false };
    let base = fake_agent(Diff::Answer(answer)).await;
    office.execute("UPDATE branchsync.branch_synchronization SET url = $1", &[&base]).await.unwrap();
    sync(&config).await;
    let after = sales(&office).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|(id, _)| *id == 1000000000001));
    assert_eq!(pull_cursor(&office).await, Some(cursor));
}

#[tokio::test]
async fn a_gzip_bomb_and_an_oversized_answer_are_refused_within_the_caps() {
    let (config, office) = office_with_branch("hostile_bomb", &fake_agent(Diff::Fault("unused".into())).await).await;
    let before = sales(&office).await;
    let cursor = "bs1/1/2/ab/3:4:".to_string();
    let sale = "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES (1000000000001, '2026-12-03 10:00:00+00', 1, 'done', '00000000-0000-0000-0000-000000000001') ON CONFLICT (id) DO NOTHING;\n";
    // 8 MiB of comments after a real sale inflate from a few KiB; the office stops at its 1 MiB chunk cap.
    let bomb = format!("{sale}{}", "-- padding\n".repeat(800_000));
    // A real sale after 4 MB of comments that hardly compress: a body over the 1 MiB answer cap, refused before
    // it is read whole, although its chunk would pass a 16 MiB chunk cap.
    let noise: String = (0..120_000u64)
        .map(|i| format!("-- {:016x}{:016x}\n", i.wrapping_mul(0x9e3779b97f4a7c15), i.wrapping_mul(0xc2b2ae3d27d4eb4f)))
        .collect();
    let oversized = format!("{noise}{sale}");
    for (what, data, caps) in [
        ("bomb", gzip(&bomb), capped(&config, 1 << 20, 1 << 20)),
        ("oversized", gzip(&oversized), capped(&config, 1 << 20, 16 << 20)),
    ] {
        assert!(data.len() < 4_000_000, "{what}");
        let answer = DiffAnswer { data, cursor: cursor.clone(), more: false };
        let base = fake_agent(Diff::Answer(answer)).await;
        office.execute("UPDATE branchsync.branch_synchronization SET url = $1", &[&base]).await.unwrap();
        let out = sync(&caps).await;
        assert!(!out.ok, "{what}: {}", out.text);
        assert_eq!(sales(&office).await, before, "{what}: nothing applied");
        assert_eq!(pull_cursor(&office).await, None, "{what}: the pull cursor stays");
    }
    let config = capped(&config, 1 << 20, 1 << 20);
    // The same sale without the padding goes through the same caps.
    let answer = DiffAnswer { data: gzip(sale), cursor: cursor.clone(), more: false };
    let base = fake_agent(Diff::Answer(answer)).await;
    office.execute("UPDATE branchsync.branch_synchronization SET url = $1", &[&base]).await.unwrap();
    // (The fake agent answers the push with diff answers too, so only the pull is looked at.)
    sync(&config).await;
    assert_eq!(sales(&office).await.len(), before.len() + 1);
    assert_eq!(pull_cursor(&office).await, Some(cursor));
}
