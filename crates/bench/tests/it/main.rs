//! A tiny run of every benchmark scenario, so that the benchmarks never rot. No figure is asserted: only that
//! each scenario runs to its end and reports a line.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_at_tiny_size() {
    // Scenarios 6 and 7 measure the real agent process, scenario 8 the real controller process.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "shop-agent",
            "--bin",
            "shop-agent",
            "-p",
            "office-controller",
            "--bin",
            "office-controller",
        ])
        .status()
        .unwrap();
    assert!(built.success());
    let results = bench::run(&bench::Sizes::tiny()).await.expect("every scenario runs");
    assert!(!results.failed, "{:?}", results.notes);
    let names: Vec<&str> = results.lines.iter().map(|l| l.scenario.as_str()).collect();
    for prefix in ["1.", "2.", "3a.", "3b.", "4.", "5.", "6a.", "6b.", "7.", "8a.", "8b."] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "scenario {prefix} missing: {names:?}");
    }
    assert!(bench::table(&results).lines().count() >= 10);
}
