//! The services' job claims against a real office database: another service's renewed claim holds, a lapsed
//! one is taken over, a claim a service left unfinished itself (its release failed) is taken back by it, and
//! only the claims of jobs a service is running are renewed.

use office_controller::records;

#[tokio::test]
async fn claims_hold_lapse_and_are_taken_back_by_their_own_service() {
    let url = testbed::shared_cluster().create_database("claims").await.unwrap();
    let office = pgsync::connect(&url).await.unwrap();
    pgsync::schema::install(&office).await.unwrap();
    records::install(&office).await.unwrap();
    let renewed = |branch: &'static str| {
        let office = &office;
        async move {
            let row = office
                .query_one(
                    "SELECT holder, renewed_at::text FROM branchsync.service_claim WHERE branch = $1",
                    &[&branch],
                )
                .await
                .unwrap();
            (row.get::<_, String>(0), row.get::<_, String>(1))
        }
    };

    assert!(records::claim(&office, "shop-1", "a:1:0001", "incremental", 60.0).await.unwrap());
    assert!(!records::claim(&office, "shop-1", "b:2:0002", "incremental", 60.0).await.unwrap(), "A's claim holds");
    // A's release failed: A takes its own unfinished claim back, B still cannot.
    assert!(records::claim(&office, "shop-1", "a:1:0001", "daily", 60.0).await.unwrap());
    assert!(!records::claim(&office, "shop-1", "b:2:0002", "incremental", 60.0).await.unwrap());

    // Renewal touches only the branches A says it is running.
    let before = renewed("shop-1").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(records::renew_claims(&office, "a:1:0001", &[]).await.unwrap(), 0);
    assert_eq!(renewed("shop-1").await, before, "a job A is not running is not renewed");
    assert_eq!(records::renew_claims(&office, "a:1:0001", &["shop-1".to_string()]).await.unwrap(), 1);
    assert_ne!(renewed("shop-1").await, before);

    // Unrenewed past the lease, B takes it over; A's late release then changes nothing.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(records::claim(&office, "shop-1", "b:2:0002", "incremental", 1.0).await.unwrap());
    records::release(&office, "shop-1", "a:1:0001", false).await.unwrap();
    let claims = records::claims(&office).await.unwrap();
    assert_eq!((claims[0].holder.as_str(), claims[0].finished_at.is_none()), ("b:2:0002", true));
    records::release(&office, "shop-1", "b:2:0002", true).await.unwrap();
    let claims = records::claims(&office).await.unwrap();
    assert_eq!((claims[0].ok, claims[0].finished_at.is_some()), (Some(true), true));
    // A finished claim is free for anyone.
    assert!(records::claim(&office, "shop-1", "c:3:0003", "verify", 60.0).await.unwrap());
}
