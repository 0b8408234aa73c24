//! Each command over HTTP with the Rust client: a catalogue uploaded, sales read back, and the edge cases of
//! sessions, diff loops and id ranges.

use agent_client::ClientError;
use protocol::fault::FaultCode;
use shop_agent::config::Limits;
use testbed::sample::{self, policy};

use crate::support::*;

fn fault(e: ClientError) -> FaultCode {
    e.fault().unwrap_or_else(|| panic!("expected a fault, got {e}"))
}

#[tokio::test]
async fn a_shop_is_initialised_loaded_and_its_sales_read_back() {
    let (office_url, mut office) = database("cmd_office", true).await;
    let (shop_url, shop) = database("cmd_shop", false).await;
    let agent = TestAgent::start(&shop_url, Limits::default()).await;
    let client = agent.office();

    assert_eq!(fault(client.sql_prepare().await.unwrap_err()), FaultCode::NotConfigured);
    // The fault is the agent's last error, with its time; status polls leave it, the next success clears it.
    let before = client.status().await.unwrap();
    assert!(before.last_error.starts_with("sql_prepare"), "{}", before.last_error);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - 60..=now + 1).contains(&before.last_error_unix), "{}", before.last_error_unix);
    assert_eq!(client.status().await.unwrap().last_error_unix, before.last_error_unix);
    client.clean().await.unwrap();
    let after = client.status().await.unwrap();
    assert_eq!((after.last_error.as_str(), after.last_error_unix), ("", 0));
    let fingerprint = client.configure(&retail("shop-1")).await.unwrap();
    assert_eq!(fingerprint.len(), 64);

    let (chunks, office_cursor) = office_full_export(&office_url, 64 * 1024).await;
    assert!(chunks.len() > 1);
    let sid = client.sql_prepare().await.unwrap();
    for c in &chunks {
        client.sql_create(sid, c.clone()).await.unwrap();
    }
    let result = client.sql_finish(sid).await.unwrap();
    assert!(result.upserted > 500);
    // Idempotent: the same answer, nothing applied twice.
    assert_eq!(client.sql_finish(sid).await.unwrap(), result);
    let received = names(&[policy::FROM_SOURCE, policy::BOTH, policy::INITIAL]);
    assert_eq!(sums(&office, &received).await, sums(&shop, &received).await);
    let status = client.status().await.unwrap();
    let shop_state = status.database.as_ref().expect("database_ok");
    assert_eq!(shop_state.last_office_cursor, office_cursor);
    assert_eq!(shop_state.assignment.as_ref().map(|a| a.branch.as_str()), Some("shop-1"));

    client.setidstart(1_000_000_000_000).await.unwrap();
    sample::sell(&shop, 5, 40, 400, 20, 150).await.unwrap();
    let min_id: i64 = shop.query_one("SELECT min(id) FROM sale", &[]).await.unwrap().get(0);
    assert_eq!(min_id, 1_000_000_000_000);
    let pending = pending_changes(&client).await;
    assert!(pending >= 40, "{pending}");

    let (_, cursor) = pull(&client, "", &mut office).await;
    let sent = names(&[policy::FROM_TARGET, policy::BOTH]);
    assert_eq!(sums(&office, &sent).await, sums(&shop, &sent).await);
    // Going on from the cursor acknowledges nothing; confirming it (the office has committed) does.
    let (answers, _) = pull(&client, &cursor, &mut office).await;
    assert_eq!(answers, 1);
    assert_eq!(pending_changes(&client).await, pending);
    client.confirm(&cursor).await.unwrap();
    assert_eq!(pending_changes(&client).await, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_diff_loop_spans_many_answers_and_survives_a_lost_answer() {
    let (_office_url, mut office) = database("loop_office", true).await;
    let limits = Limits { diff_chunk_bytes: 8 * 1024, ..Limits::default() };
    let (agent, shop) = configured_shop("loop_shop", limits).await;
    let client = agent.office();
    // Products the sales refer to must exist at the shop: copy the office's.
    sample::load_office(
        &shop,
        sample::OfficeData { seed: 17, products: 400, services: 20, persons: 150, parameters: 0 },
    )
    .await
    .unwrap();
    client.setidstart(2_000_000_000_000).await.unwrap();
    sample::sell(&shop, 9, 300, 400, 20, 150).await.unwrap();

    // Ask for the second answer twice, as if the first reply to it was lost.
    let first = client.diff("").await.unwrap();
    assert!(first.more);
    let second = client.diff(&first.cursor).await.unwrap();
    let again = client.diff(&first.cursor).await.unwrap();
    assert_eq!(second.data, again.data);
    assert_eq!(second.cursor, again.cursor);

    let (answers, _) = pull(&client, "", &mut office).await;
    assert!(answers > 5, "{answers} answers");
    let sent = names(&[policy::FROM_TARGET]);
    assert_eq!(sums(&office, &sent).await, sums(&shop, &sent).await);

    // An unknown continuation restarts from its base instead of skipping anything.
    let restarted = client.diff("~12345~3").await.unwrap();
    assert!(!restarted.data.is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn a_transaction_open_across_a_diff_is_delivered_by_the_next_diff() {
    let (_office_url, mut office) = database("long_office", true).await;
    let (agent, shop) = configured_shop("long_shop", Limits::default()).await;
    let client = agent.office();
    let (_, cursor) = pull(&client, "", &mut office).await;

    let long = pgsync::connect(&agent.db_url).await.unwrap();
    long.batch_execute("BEGIN; INSERT INTO person (id, name) VALUES (3000000000001, 'late customer')").await.unwrap();
    shop.batch_execute("INSERT INTO person (id, name) VALUES (3000000000002, 'early customer')").await.unwrap();
    let (_, cursor2) = pull(&client, &cursor, &mut office).await;
    long.batch_execute("COMMIT").await.unwrap();
    let (_, _) = pull(&client, &cursor2, &mut office).await;
    let n: i64 = office
        .query_one("SELECT count(*) FROM person WHERE id IN (3000000000001, 3000000000002)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    agent.stop().await;
}

/// Copies one row of `table` from the office into the shop, so that the shop's received tables are not all
/// empty and its uploads are staged rather than streamed.
async fn seed_row(office: &tokio_postgres::Client, shop: &tokio_postgres::Client, table: &str) {
    use futures_util::{SinkExt, TryStreamExt};
    let out = office.copy_out(&format!("COPY (SELECT * FROM {table} ORDER BY 1 LIMIT 1) TO STDOUT")).await.unwrap();
    let rows: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
    let sink = shop.copy_in(&format!("COPY {table} FROM STDIN")).await.unwrap();
    let mut sink = std::pin::pin!(sink);
    for row in rows {
        sink.send(row).await.unwrap();
    }
    sink.finish().await.unwrap();
}

#[tokio::test]
async fn staged_chunks_survive_an_agent_restart_and_unknown_sids_are_refused() {
    let (office_url, office) = database("restart_office", true).await;
    let (agent, shop) = configured_shop("restart_shop", Limits::default()).await;
    seed_row(&office, &shop, "parameter").await;
    let (chunks, _) = office_full_export(&office_url, 32 * 1024).await;
    let sid = agent.office().sql_prepare().await.unwrap();
    assert!(!streamed(&shop, sid).await);
    for c in &chunks {
        agent.office().sql_create(sid, c.clone()).await.unwrap();
    }
    let url = agent.db_url.clone();
    agent.stop().await;

    let agent = TestAgent::start(&url, Limits::default()).await;
    let client = agent.office();
    client.sql_finish(sid).await.unwrap();
    let received = names(&[policy::FROM_SOURCE, policy::BOTH, policy::INITIAL]);
    assert_eq!(sums(&office, &received).await, sums(&shop, &received).await);

    assert_eq!(fault(client.sql_finish(424242).await.unwrap_err()), FaultCode::UnknownSession);
    assert_eq!(fault(client.sql_create(424242, chunks[0].clone()).await.unwrap_err()), FaultCode::UnknownSession);
    assert_eq!(
        fault(client.sql_create(sid, chunks[0].clone()).await.unwrap_err()),
        FaultCode::UnknownSession,
        "finished sessions take no more chunks"
    );
    agent.stop().await;
}

async fn streamed(shop: &tokio_postgres::Client, sid: i64) -> bool {
    shop.query_one("SELECT streamed FROM branchsync.upload_session WHERE sid = $1", &[&sid]).await.unwrap().get(0)
}

async fn row_count(client: &tokio_postgres::Client, tables: &[protocol::payload::TableName]) -> i64 {
    let mut n = 0;
    for t in tables {
        n += client.query_one(&format!("SELECT count(*) FROM {}", t.quoted()), &[]).await.unwrap().get::<_, i64>(0);
    }
    n
}

#[tokio::test]
async fn a_streamed_initial_load_applies_a_retried_chunk_once_and_is_lost_whole_with_the_agent() {
    let (office_url, office) = database("stream_office", true).await;
    let (agent, shop) = configured_shop("stream_shop", Limits::default()).await;
    let received = names(&[policy::FROM_SOURCE, policy::BOTH, policy::INITIAL]);
    let (chunks, _) = office_full_export(&office_url, 32 * 1024).await;
    assert!(chunks.len() > 2);

    // A chunk sent again right after itself (its answer was lost) is applied once.
    let client = agent.office();
    let sid = client.sql_prepare().await.unwrap();
    assert!(streamed(&shop, sid).await);
    client.sql_create(sid, chunks[0].clone()).await.unwrap();
    for c in &chunks {
        client.sql_create(sid, c.clone()).await.unwrap();
    }
    client.sql_finish(sid).await.unwrap();
    assert_eq!(sums(&office, &received).await, sums(&shop, &received).await);

    // The streamed transaction dies with the agent: nothing of the upload stays, and the sid says so.
    client.clean().await.unwrap();
    client.configure(&retail("stream")).await.unwrap();
    let sid = client.sql_prepare().await.unwrap();
    for c in &chunks[..2] {
        client.sql_create(sid, c.clone()).await.unwrap();
    }
    let url = agent.db_url.clone();
    agent.stop().await;
    let agent = TestAgent::start(&url, Limits::default()).await;
    let client = agent.office();
    assert_eq!(fault(client.sql_create(sid, chunks[2].clone()).await.unwrap_err()), FaultCode::UnknownSession);
    assert_eq!(fault(client.sql_finish(sid).await.unwrap_err()), FaultCode::UnknownSession);
    assert_eq!(row_count(&shop, &received).await, 0);
    assert_eq!(open_sessions(&client).await, 0, "the lost session holds no slot after the restart");

    // A chunk that fails to apply (its keys are in the table already) rolls the whole upload back; the next call
    // of the session reports it, and later ones say the session is gone.
    let sid = client.sql_prepare().await.unwrap();
    client.sql_create(sid, chunks[0].clone()).await.unwrap();
    client.sql_create(sid, chunks[1].clone()).await.unwrap();
    let again = client.sql_create(sid, chunks[0].clone()).await;
    let first = match again {
        Err(e) => fault(e),
        Ok(_) => fault(client.sql_finish(sid).await.unwrap_err()),
    };
    assert_eq!(first, FaultCode::PayloadRefused);
    assert_eq!(fault(client.sql_finish(sid).await.unwrap_err()), FaultCode::UnknownSession);
    assert_eq!(row_count(&shop, &received).await, 0);
    assert_eq!(open_sessions(&client).await, 0);
    agent.stop().await;
}

#[tokio::test]
async fn setidstart_never_moves_a_sequence_backwards_and_caps_it() {
    let (agent, shop) = configured_shop("ids", Limits::default()).await;
    let client = agent.office();
    let mut spec = retail("ids");
    spec.id_range = 100;
    client.configure(&spec).await.unwrap();
    client.setidstart(1000).await.unwrap();
    shop.batch_execute("INSERT INTO person (name) VALUES ('a'), ('b')").await.unwrap();
    // Asking again for the same start does not move the sequence back over the ids already issued.
    client.setidstart(1000).await.unwrap();
    let id: i64 = shop.query_one("INSERT INTO person (name) VALUES ('c') RETURNING id", &[]).await.unwrap().get(0);
    assert_eq!(id, 1002);
    // Beyond the range end (1099) the sequence refuses: the shop cannot issue another branch's ids.
    shop.batch_execute("SELECT setval('person_id_seq', 1099)").await.unwrap();
    let err = shop.batch_execute("INSERT INTO person (name) VALUES ('d')").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("2200H"));
    // A start whose range lies below the sequence belongs to another branch.
    assert_eq!(fault(client.setidstart(1).await.unwrap_err()), FaultCode::IdRangeConflict);
    // Python clients send 64-bit values as decimal strings.
    let v = client.call("setidstart", vec![dxr::Value::String("5000".into())]).await.unwrap();
    assert!(matches!(v, dxr::Value::Struct(_)));
    agent.stop().await;
}
