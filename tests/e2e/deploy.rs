//! What the packages install (issue 12) stays true to the binaries: the default configurations under
//! `deploy/` are exactly what the binaries print, and each systemd unit starts its binary with options it
//! accepts, as the user and with the configuration path the package creates. (The `.deb` contents themselves
//! are listed and checked by `deploy/check-packages`, which `.ci/run` runs.)

use std::path::Path;
use std::process::Command;

use crate::support::binary;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn printed(bin: &str, command: &str) -> String {
    let out = Command::new(binary(bin)).arg(command).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn packaged_configurations_and_units_match_the_binaries() {
    assert_eq!(
        deploy("office.toml"),
        printed("office-controller", "print-example-config"),
        "regenerate deploy/office.toml"
    );
    assert_eq!(deploy("agent.toml"), printed("shop-agent", "print-default-config"), "regenerate deploy/agent.toml");
    for (unit, bin, config) in [
        ("office-controller.service", "office-controller", "/etc/branchsync/office.toml"),
        ("shop-agent.service", "shop-agent", "/etc/branchsync/agent.toml"),
    ] {
        let text = deploy(unit);
        let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some(format!("/usr/bin/{bin}").as_str()), "{unit}");
        let args: Vec<&str> = words.collect();
        assert!(args.contains(&config), "{unit} reads {config}");
        for line in ["Type=notify", "User=branchsync", "Restart=on-failure", "WatchdogSec=", "ProtectSystem=strict"] {
            assert!(text.lines().any(|l| l.starts_with(line)), "{unit} has {line}");
        }
        // The options parse: the same line with --help answers instead of complaining about an argument.
        let mut with_help: Vec<&str> = args.clone();
        with_help.push("--help");
        let out = Command::new(binary(bin)).args(&with_help).output().unwrap();
        assert!(out.status.success(), "{unit}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
