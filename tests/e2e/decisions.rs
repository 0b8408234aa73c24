//! Every cell of the `both` decision table (ARCHITECTURE.md, "Conflicts on `both` tables"): shop A's change
//! (edit, delete, nothing) meets a peer's (the office's, or shop B's through the office), under each rule. Each
//! cell ends with the office and both shops holding the same row (or none), the one the table says, and with
//! exactly one recorded conflict where both sides changed the row (none where both deleted it).

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Edit,
    Delete,
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    Office,
    ShopB,
}

/// What a cell ends with: the row as A edited it, as the peer edited it, or no row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    A,
    Peer,
    Gone,
    Untouched,
}

/// The decision table. `newer-wins` cells give A the later `updated_at`; a delete is never newer than an edit.
fn expected(rule: &str, a: Change, peer: Change) -> (End, Option<&'static str>) {
    use Change::*;
    match (a, peer) {
        (Nothing, Nothing) => (End::Untouched, None),
        (Edit, Nothing) => (End::A, None),
        (Delete, Nothing) | (Nothing, Delete) | (Delete, Delete) => (End::Gone, None),
        (Nothing, Edit) => (End::Peer, None),
        (Edit, Edit) => match rule {
            "office-wins" => (End::Peer, Some("office")),
            _ => (End::A, Some("shop")),
        },
        (Edit, Delete) => match rule {
            "office-wins" => (End::Gone, Some("office")),
            _ => (End::A, Some("shop")),
        },
        (Delete, Edit) => match rule {
            "shop-wins" => (End::Gone, Some("shop")),
            _ => (End::Peer, Some("office")),
        },
    }
}

async fn name_of(db: &tokio_postgres::Client, id: i64) -> Option<String> {
    db.query_opt("SELECT name FROM person WHERE id = $1", &[&id]).await.unwrap().map(|r| r.get(0))
}

fn write(change: Change, id: i64, name: &str, updated: &str) -> Option<String> {
    match change {
        Change::Edit => Some(format!("UPDATE person SET name = '{name}', updated_at = '{updated}' WHERE id = {id};")),
        Change::Delete => Some(format!("DELETE FROM person WHERE id = {id};")),
        Change::Nothing => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_both_decision_table_converges_across_two_shops_with_the_decision_recorded() {
    let fleet = Fleet::new("decisions", 2, 20, "office-wins").await;
    let (a, b) = (&fleet.shops[0], &fleet.shops[1]);
    let changes = [Change::Edit, Change::Delete, Change::Nothing];
    let mut next_id = 1i64;
    let mut failures = Vec::new();
    for rule in ["office-wins", "shop-wins", "newer-wins"] {
        let mut cells = Vec::new();
        for peer in [Peer::Office, Peer::ShopB] {
            for ca in changes {
                for cp in changes {
                    cells.push((next_id, peer, ca, cp));
                    next_id += 1;
                }
            }
        }
        let mut original = std::collections::BTreeMap::new();
        for &(id, peer, ca, cp) in &cells {
            original.insert(id, name_of(&fleet.office, id).await);
            if let Some(sql) = write(ca, id, "A", "2031-01-01") {
                a.db.batch_execute(&sql).await.unwrap();
            }
            let peer_db = if peer == Peer::Office { &fleet.office } else { &b.db };
            if let Some(sql) = write(cp, id, "peer", "2030-01-01") {
                peer_db.batch_execute(&sql).await.unwrap();
            }
        }
        let conflicts_before = count(&fleet.office, "SELECT coalesce(max(id), 0) FROM branchsync.conflict").await;
        // B's changes reach the office first, then A's meet them; later rounds carry the decisions out.
        for _ in 0..3 {
            for shop in ["shop-2", "shop-1"] {
                let out = fleet.ctl_env(&["sync", shop], &[("OFFICE_CONTROLLER__POLICIES__RETAIL__CONFLICT", rule)]);
                assert!(out.status.success(), "{rule}, sync {shop}: {}", text(&out));
            }
        }
        let recorded: Vec<(String, String, String)> = fleet
            .office
            .query(
                "SELECT array_to_string(pk, ','), decision, branch FROM branchsync.conflict \
                 WHERE id > $1 AND tbl LIKE '%person' ORDER BY id",
                &[&conflicts_before],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for &(id, peer, ca, cp) in &cells {
            let (end, decision) = expected(rule, ca, cp);
            let want = match end {
                End::A => Some("A".to_string()),
                End::Peer => Some("peer".to_string()),
                End::Gone => None,
                End::Untouched => original[&id].clone(),
            };
            let cell = format!("{rule}: A {ca:?}, {peer:?} {cp:?} (person {id})");
            for (side, db) in [("office", &fleet.office), ("shop A", &a.db), ("shop B", &b.db)] {
                let got = name_of(db, id).await;
                if got != want {
                    failures.push(format!("{cell}: {side} holds {got:?}, expected {want:?}"));
                }
            }
            let decided: Vec<&(String, String, String)> = recorded.iter().filter(|c| c.0 == id.to_string()).collect();
            match decision {
                None if !decided.is_empty() => failures.push(format!("{cell}: no conflict expected, got {decided:?}")),
                Some(d) if decided.len() != 1 || decided[0].1 != d || decided[0].2 != "shop-1" => {
                    failures.push(format!("{cell}: one conflict decided {d} for shop-1 expected, got {decided:?}"))
                }
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{} cells wrong:\n{}", failures.len(), failures.join("\n"));
    fleet.assert_all_verified();
}
