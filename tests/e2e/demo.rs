//! The README's main-job command runs to the end and verifies every synced table.

use std::process::Command;

use crate::support::binary;

#[test]
fn the_demo_runs_and_verifies_every_synced_table() {
    let out = Command::new(binary("branchsync-demo"))
        .args(["--products", "400", "--sales", "30"])
        .output()
        .expect("branchsync-demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Every table the shops sync each round is in sync; `parameter` is sent once, at initialisation.
    for table in
        ["public.product", "public.service", "public.person", "public.sale", "public.sale_item", "public.payment"]
    {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(table) && l.contains("  in sync"))
            .unwrap_or_else(|| panic!("{table} not verified:\n{stdout}"));
        assert!(line.trim_end().ends_with("in sync"), "{line}");
    }
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("public.parameter") && l.contains("not compared")),
        "{stdout}"
    );
    assert!(!stdout.contains("DRIFT"), "{stdout}");
    assert!(stdout.contains("shop-1's new customer at shop-2: yes"), "{stdout}");
}
