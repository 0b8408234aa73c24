//! Trust boundaries at the agent: what a policy may name, and which cursors acknowledge anything. Each refusal is a fault, nothing is stored or
//! touched, and the agent goes on serving.

use std::process::Command;

use protocol::fault::FaultCode;
use shop_agent::config::Limits;

use crate::support::*;

fn hostile(phase: &str, agent: &TestAgent) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/hostile.py");
    let out =
        Command::new("python3").args([script, phase, &agent.base, OFFICE_PASSWORD]).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "python {phase} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not json ({e}): {stdout}"))
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_refuses_system_and_sync_tables_and_stores_nothing() {
    let (agent, shop) = configured_shop("policy_reserved", Limits::default()).await;
    shop.batch_execute(
        "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES (1, now(), 5, 'done', gen_random_uuid())",
    )
    .await
    .unwrap();
    let roles = count(&shop, "SELECT count(*) FROM pg_authid").await;
    let log = count(&shop, "SELECT count(*) FROM branchsync.change_log").await;
    let stored = || async {
        shop.query_one("SELECT from_source, from_target, both_ways, initial FROM branchsync.shop_policy", &[])
            .await
            .unwrap()
    };
    let before: Vec<Vec<String>> = {
        let r = stored().await;
        (0..4).map(|i| r.get(i)).collect()
    };

    let out = tokio::task::block_in_place(|| hostile("policy", &agent));
    for attempt in [
        "pg_authid_from_source",
        "pg_class_initial",
        "change_log_from_source",
        "change_log_from_target",
        "shop_policy_both",
        "information_schema",
        "toast",
    ] {
        assert_eq!(out[attempt], FaultCode::BadParams.code(), "{attempt}: {out}");
    }
    assert_eq!(out["still_up"], true);
    let after: Vec<Vec<String>> = {
        let r = stored().await;
        (0..4).map(|i| r.get(i)).collect()
    };
    assert_eq!(after, before, "the stored policy is unchanged");
    assert_eq!(count(&shop, "SELECT count(*) FROM pg_authid").await, roles);
    assert_eq!(
        count(&shop, "SELECT count(*) FROM branchsync.change_log").await,
        log,
        "the unsent sale is still logged"
    );
    let triggers = count(
        &shop,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'branchsync.change_log'::regclass AND NOT tgisinternal",
    )
    .await;
    assert_eq!(triggers, 0, "no capture on the change log itself");
    // A till sale still goes through.
    shop.batch_execute(
        "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES (2, now(), 5, 'done', gen_random_uuid())",
    )
    .await
    .unwrap();
    agent.stop().await;
}

#[tokio::test]
async fn configure_refuses_a_table_the_agents_role_may_not_write_and_names_it() {
    let (url, shop) = database("policy_grants", false).await;
    let role = format!("limited_{}", url.rsplit('=').next().unwrap());
    shop.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT CREATE ON DATABASE {db} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON product, person, parameter TO {role};
         GRANT SELECT, INSERT, UPDATE ON service TO {role};
         GRANT SELECT, TRIGGER ON sale, sale_item, payment, person TO {role};",
        db = url.rsplit('=').next().unwrap()
    ))
    .await
    .unwrap();
    let limited_url = url.replace("user=postgres", &format!("user={role}"));
    let agent = TestAgent::start(&limited_url, Limits::default()).await;
    let client = agent.office();
    let err = client.configure(&retail("grants")).await.unwrap_err();
    assert_eq!(err.fault(), Some(FaultCode::NotWritable), "{err}");
    assert!(err.to_string().contains("public.service"), "{err}");
    assert_eq!(count(&shop, "SELECT count(*) FROM branchsync.shop_policy").await, 0, "nothing stored");
    assert!(client.status().await.is_ok(), "the agent is still up");
    shop.batch_execute(&format!("GRANT DELETE ON service TO {role}")).await.unwrap();
    client.configure(&retail("grants")).await.unwrap();
    agent.stop().await;
}

async fn upload(client: &agent_client::AgentClient, sql: &str) -> protocol::wire::Finished {
    let sid = client.sql_prepare().await.unwrap();
    client.sql_create(sid, gzip(sql.as_bytes())).await.unwrap();
    client.sql_finish(sid).await.unwrap()
}

#[tokio::test]
async fn a_replacing_upload_never_deletes_a_customer_the_office_has_not_pulled_yet() {
    let (agent, shop) = configured_shop("replace_deferred", Limits::default()).await;
    let client = agent.office();
    upload(
        &client,
        "INSERT INTO person (id, name) VALUES (1, 'office one'), (2, 'office two') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;",
    )
    .await;
    // At the till: a new customer, and an edit of one the office sent; neither has been pulled.
    shop.batch_execute("INSERT INTO person (id, name) VALUES (3, 'new at the shop'); UPDATE person SET name = 'edited at the shop' WHERE id = 2")
        .await
        .unwrap();
    let pending = pending_changes(&client).await;
    assert_eq!(pending, 2);

    // The office's complete synchronisation carries only customer 1.
    let finished = upload(
        &client,
        "-- replace: public.person\nINSERT INTO person (id, name) VALUES (1, 'office one') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;",
    )
    .await;
    let names: Vec<String> =
        shop.query("SELECT name FROM person ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["office one", "edited at the shop", "new at the shop"]);
    assert_eq!(finished.deleted, 0);
    assert_eq!(finished.deferred, 2);
    assert_eq!(pending_changes(&client).await, pending, "the shop's changes still wait for the office");
    agent.stop().await;
}

/// The acknowledged cursor and the shop's own change-log rows.
async fn acknowledgement(shop: &tokio_postgres::Client) -> (Option<String>, i64) {
    let acknowledged = shop
        .query_opt("SELECT value FROM branchsync.shop_state WHERE key = 'acknowledged_cursor'", &[])
        .await
        .unwrap()
        .map(|r| r.get(0));
    (acknowledged, count(shop, "SELECT count(*) FROM branchsync.change_log WHERE origin = ''").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cursor_purges_nothing_and_only_a_confirmed_issued_cursor_does() {
    let (agent, shop) = configured_shop("forged_cursor", Limits::default()).await;
    let client = agent.office();
    client.setidstart(1_000_000_000_000).await.unwrap();
    for id in 0..5 {
        shop.execute(
            "INSERT INTO sale (id, sold_at, total, status, receipt) VALUES (1000000000000 + $1, now(), 5, 'done', gen_random_uuid())",
            &[&(id as i64)],
        )
        .await
        .unwrap();
    }
    let before = acknowledgement(&shop).await;
    assert_eq!(before, (None, 5));
    let pending = pending_changes(&client).await;
    assert_eq!(pending, 5);

    // A third party reads twice (each read goes on from the last cursor) and forges cursors from what it saw.
    let out = tokio::task::block_in_place(|| hostile("cursor", &agent));
    for attempt in ["forged_diff", "forged_confirm", "unissued_confirm"] {
        assert_eq!(out[attempt], FaultCode::CursorRefused.code(), "{attempt}: {out}");
    }
    assert_eq!(out["still_up"], true);
    assert_eq!(out["pending"], pending, "reading and forging purged nothing: {out}");
    assert_eq!(acknowledgement(&shop).await, before, "nothing acknowledged, every sale still logged");

    // The office confirms the later cursor once it has committed: the shop purges what it covers.
    let (first, second) = (out["first"].as_str().unwrap(), out["second"].as_str().unwrap());
    client.confirm(second).await.unwrap();
    assert_eq!(pending_changes(&client).await, 0);
    let mut purged = acknowledgement(&shop).await;
    for _ in 0..50 {
        if purged.1 == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        purged = acknowledgement(&shop).await;
    }
    assert_eq!(purged, (Some(second.to_string()), 0), "the background purge ran");

    // Confirming the same cursor again (a lost answer) changes nothing. The earlier cursor is now behind the
    // confirmed one: confirming it or a diff from it (an office restored from a backup) is refused, to fall back
    // to a full exchange rather than miss purged sales.
    client.confirm(second).await.unwrap();
    assert_eq!(client.confirm(first).await.unwrap_err().fault(), Some(FaultCode::CursorRefused));
    assert_eq!(acknowledgement(&shop).await.0.as_deref(), Some(second));
    assert_eq!(client.diff(first).await.unwrap_err().fault(), Some(FaultCode::CursorRefused));
    let next = client.diff(second).await.unwrap();
    assert!(!next.more);
    assert!(client.status().await.is_ok());
    agent.stop().await;
}

/// Four pushes that fail in each way a session can end (a refused chunk, a failed apply, a limit) and one the
/// office gave up on, then a fifth that succeeds: with the default four session slots, none is left holding one.
async fn refused_uploads_leave_no_session(shop: &tokio_postgres::Client, client: &agent_client::AgentClient) {
    let products = || async { count(shop, "SELECT count(*) FROM product").await };
    let before = products().await;
    let good = gzip(b"INSERT INTO product (id, code, name, price) VALUES (7, 'g', 'good', 1) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;");
    let failures: Vec<(&str, Vec<u8>)> = vec![
        ("ddl", gzip(b"DROP TABLE sale;")),
        ("another branch's table", gzip(b"DELETE FROM sale WHERE id = 1;")),
        (
            "a null that the table refuses",
            gzip(b"INSERT INTO product (id, code, name, price) VALUES (8, NULL, 'x', 1) ON CONFLICT (id) DO NOTHING;"),
        ),
        ("unknown column", gzip(b"INSERT INTO product (id, nope) VALUES (9, 1) ON CONFLICT (id) DO NOTHING;")),
    ];
    for (what, bad) in failures {
        let sid = client.sql_prepare().await.unwrap();
        client.sql_create(sid, good.clone()).await.unwrap();
        // Refused when it arrives, or when the session is applied.
        let refused = match client.sql_create(sid, bad).await {
            Err(e) => e,
            Ok(()) => client.sql_finish(sid).await.unwrap_err(),
        };
        assert!(refused.fault().is_some(), "{what}: {refused}");
        assert_eq!(client.sql_finish(sid).await.unwrap_err().fault(), Some(FaultCode::UnknownSession), "{what}");
        assert_eq!(products().await, before, "{what}: nothing applied");
    }
    // One more the office abandoned and aborted.
    let sid = client.sql_prepare().await.unwrap();
    client.sql_create(sid, good.clone()).await.unwrap();
    client.sql_abort(sid).await.unwrap();
    client.sql_abort(sid).await.unwrap();
    assert_eq!(client.sql_finish(sid).await.unwrap_err().fault(), Some(FaultCode::UnknownSession));
    assert_eq!(products().await, before);
    let status = client.status().await.unwrap().database.unwrap();
    assert_eq!((status.open_sessions, status.sessions.len()), (0, 0));

    let sid = client.sql_prepare().await.unwrap();
    client.sql_create(sid, good.clone()).await.unwrap();
    let finished = client.sql_finish(sid).await.unwrap();
    assert_eq!(finished.upserted, 1);
    // Aborting a finished session changes nothing: its result stays for a retried finish.
    client.sql_abort(sid).await.unwrap();
    assert_eq!(client.sql_finish(sid).await.unwrap(), finished);
    assert_eq!(count(shop, "SELECT count(*) FROM product WHERE id = 7").await, 1);
}

#[tokio::test]
async fn refused_and_aborted_uploads_never_block_a_staged_session() {
    let (agent, shop) = configured_shop("refused_staged", Limits::default()).await;
    // A product already there: uploads are staged, not streamed.
    shop.batch_execute("INSERT INTO product (id, code, name, price) VALUES (1, 'p', 'there', 1)").await.unwrap();
    refused_uploads_leave_no_session(&shop, &agent.office()).await;
    let streamed = count(&shop, "SELECT count(*) FROM branchsync.upload_session WHERE streamed").await;
    assert_eq!(streamed, 0, "every session of this test was staged");
    agent.stop().await;
}

#[tokio::test]
async fn refused_and_aborted_uploads_never_block_a_streamed_session() {
    let (agent, shop) = configured_shop("refused_streamed", Limits::default()).await;
    refused_uploads_leave_no_session(&shop, &agent.office()).await;
    let streamed = count(&shop, "SELECT count(*) FROM branchsync.upload_session WHERE streamed").await;
    assert_eq!(streamed, 1, "the shop was empty: the successful session streamed");
    agent.stop().await;
}

#[tokio::test]
async fn a_retried_prepare_gets_its_session_back_and_idle_sessions_expire_in_seconds() {
    let limits = Limits { concurrent_sessions: 2, upload_idle_seconds: 2, ..Limits::default() };
    let (agent, shop) = configured_shop("idle_sessions", limits).await;
    shop.batch_execute("INSERT INTO product (id, code, name, price) VALUES (1, 'p', 'there', 1)").await.unwrap();
    let client = agent.office();
    let token = || vec![dxr::Value::String("push-of-17:05".into())];
    let first = client.call("sql_prepare", token()).await.unwrap();
    let again = client.call("sql_prepare", token()).await.unwrap();
    assert_eq!(first, again, "the retry after a lost answer is the same session");
    let stoq = client.call("sql_prepare", vec![]).await.unwrap();
    assert_ne!(stoq, first, "without a token every call opens a session");
    let sessions = client.status().await.unwrap().database.unwrap().sessions;
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.age_seconds >= 0 && s.chunks == 0 && !s.streamed), "{sessions:?}");
    let refused = client.sql_prepare().await.unwrap_err();
    assert_eq!(refused.fault(), Some(FaultCode::LimitExceeded), "both slots are taken");

    // Left idle past upload_idle_seconds, both expire and a new push gets a slot.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let sid = client.sql_prepare().await.unwrap();
    let status = client.status().await.unwrap().database.unwrap();
    assert_eq!(status.sessions.iter().map(|s| s.sid).collect::<Vec<_>>(), [sid]);
    let old = protocol::wire::int(&first).unwrap();
    assert_eq!(client.sql_finish(old).await.unwrap_err().fault(), Some(FaultCode::UnknownSession));
    agent.stop().await;
}

#[tokio::test]
async fn clean_refuses_while_the_sync_schema_holds_a_shop_table_and_erases_nothing() {
    let (agent, shop) = configured_shop("occupied_schema", Limits::default()).await;
    let client = agent.office();
    shop.batch_execute("INSERT INTO product (id, code, name, price) VALUES (1, 'p', 'synced', 1)").await.unwrap();
    // The trap: a role named like the sync schema creates a table with the default search_path ("$user", public),
    // and it lands in the sync schema.
    shop.batch_execute(
        "DO $$ BEGIN CREATE ROLE branchsync; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT USAGE, CREATE ON SCHEMA branchsync TO branchsync;
         SET ROLE branchsync;
         CREATE TABLE till_note (id int PRIMARY KEY, note text);
         INSERT INTO till_note VALUES (1, 'the safe is stuck');
         RESET ROLE;",
    )
    .await
    .unwrap();
    assert_eq!(count(&shop, "SELECT count(*) FROM branchsync.till_note").await, 1, "the table landed in the schema");

    let err = client.clean().await.unwrap_err();
    assert_eq!(err.fault(), Some(FaultCode::SchemaOccupied), "{err}");
    assert!(err.to_string().contains("branchsync.till_note"), "{err}");
    assert_eq!(count(&shop, "SELECT count(*) FROM branchsync.till_note").await, 1, "the shop's table is kept");
    assert_eq!(count(&shop, "SELECT count(*) FROM product").await, 1, "nothing was erased");
    assert_eq!(count(&shop, "SELECT count(*) FROM branchsync.shop_policy").await, 1, "the policy is kept");
    assert!(client.status().await.is_ok());

    // Moved out of the way, the table survives the clean that now goes through.
    shop.batch_execute("ALTER TABLE branchsync.till_note SET SCHEMA public").await.unwrap();
    client.clean().await.unwrap();
    assert_eq!(count(&shop, "SELECT count(*) FROM public.till_note").await, 1);
    assert_eq!(count(&shop, "SELECT count(*) FROM product").await, 0);
    agent.stop().await;
}
