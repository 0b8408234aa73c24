//! Policies are checked when loaded, each mistake a clear error naming the table.

use std::collections::BTreeMap;

use office_controller::config::{Config, PolicyConfig, SyncConfig};

fn policy(from_source: &[&str], from_target: &[&str], both: &[&str], initial: &[&str]) -> PolicyConfig {
    let l = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
    PolicyConfig {
        from_source: l(from_source),
        from_target: l(from_target),
        both: l(both),
        initial: l(initial),
        conflict: "office-wins".into(),
        conflicts: BTreeMap::new(),
        newer_column: "updated_at".into(),
        both_deletes: "any".into(),
    }
}

async fn check(p: PolicyConfig) -> Result<(), String> {
    let url = testbed::shared_cluster().create_database("policy").await.unwrap();
    let client = pgsync::connect(&url).await.unwrap();
    testbed::sample::create_schema(&client).await.unwrap();
    client.batch_execute("CREATE TABLE no_key (a int); CREATE TABLE note (id int PRIMARY KEY, till_id int REFERENCES till_session(id))").await.unwrap();
    let config = Config {
        database_url: url,
        policies: [("p".to_string(), p)].into(),
        sync: SyncConfig::default(),
        schedule: Default::default(),
        service: Default::default(),
    };
    config.policy("p", &client).await.map(|_| ()).map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn the_retail_policy_passes_and_each_mistake_is_named() {
    let retail = || policy(&["product", "service"], &["sale", "sale_item", "payment"], &["person"], &["parameter"]);
    assert_eq!(check(retail()).await, Ok(()));

    let twice =
        policy(&["product", "service"], &["sale", "sale_item", "payment"], &["person", "product"], &["parameter"]);
    assert!(check(twice).await.unwrap_err().contains("public.product"));
    let missing = policy(&["product", "service", "nonexistent"], &["sale", "sale_item", "payment"], &["person"], &[]);
    assert!(check(missing).await.unwrap_err().contains("public.nonexistent"));
    let keyless = policy(&["product", "service", "no_key"], &["sale", "sale_item", "payment"], &["person"], &[]);
    assert!(check(keyless).await.unwrap_err().contains("public.no_key"));
    // sale_item references product: leaving product out is refused, naming both.
    let unsynced_parent = policy(&["service"], &["sale", "sale_item", "payment"], &["person"], &[]);
    let err = check(unsynced_parent).await.unwrap_err();
    assert!(err.contains("public.sale_item") && err.contains("public.product"), "{err}");
    // A catalogue table that references a shop-only table cannot reach the other shops.
    let wrong_direction =
        policy(&["product", "service", "note"], &["sale", "sale_item", "payment", "till_session"], &["person"], &[]);
    let err = check(wrong_direction).await.unwrap_err();
    assert!(err.contains("public.note") && err.contains("public.till_session"), "{err}");
    let mut rule = retail();
    rule.conflict = "random-wins".into();
    assert!(check(rule).await.unwrap_err().contains("random-wins"));
    let mut newer = retail();
    newer.conflicts.insert("person".into(), "newer-wins".into());
    newer.newer_column = "modified".into();
    assert!(check(newer).await.unwrap_err().contains("modified"));
}
