//! Installing adit as a service (issue 25): `scripts/install.sh` into a temporary root puts the
//! binary, a config holding every key commented out (which the installed binary loads), an
//! environment file and the systemd units in place, keeps an edited config on a second run,
//! and `systemd-analyze verify` accepts the units as installed. scripts/setup.sh installs
//! systemd-analyze; without it this test fails.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn install(root: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    let out = Command::new(script)
        .arg("--root")
        .arg(root)
        .args(["--prefix", "/opt/adit"])
        .arg("--bin")
        .arg(common::adit_binary())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn install_sh_puts_a_verified_service_in_place() {
    let root = tempfile::tempdir().unwrap();
    install(root.path());
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    assert_eq!(mode(&at("/opt/adit/bin/adit")), 0o755);
    assert_eq!(mode(&at("/etc/adit")), 0o750);
    assert_eq!(mode(&at("/etc/adit/adit.toml")), 0o640);
    assert_eq!(mode(&at("/etc/adit/adit.env")), 0o640);

    // Every section of the example (docs/src/reference/adit.example.toml) is there, commented
    // out, and the installed binary loads the file (all defaults).
    let config = std::fs::read_to_string(at("/etc/adit/adit.toml")).unwrap();
    for section in [
        "# [query]",
        "# [pool]",
        "# [payments]",
        "# [log]",
        "# [egress]",
    ] {
        assert!(config.contains(section), "{section} missing:\n{config}");
    }
    assert!(
        config.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "a key is not commented out:\n{config}"
    );
    let loaded = Command::new(at("/opt/adit/bin/adit"))
        .arg("--config")
        .arg(at("/etc/adit/adit.toml"))
        .args(["token", "new", "--name", "probe"])
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "the installed config does not load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    // The units name the installed binary and pass systemd's own check, in a root that has
    // the system's own units too (targets the service's default dependencies name).
    let system_units = Path::new("/usr/lib/systemd/system");
    assert!(
        system_units.is_dir(),
        "{} is missing (scripts/setup.sh installs the systemd package)",
        system_units.display()
    );
    std::fs::create_dir_all(at("/usr/lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(system_units)
        .arg(at("/usr/lib/systemd"))
        .status()
        .unwrap();
    assert!(copied.success());
    let unit = std::fs::read_to_string(at("/etc/systemd/system/adit.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/adit/bin/adit --config /etc/adit/adit.toml"),
        "{unit}"
    );
    assert!(!unit.contains("@BINDIR@"));
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(["adit.service", "adit-worker@rig1.service"])
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs the systemd package)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("adit"),
        "systemd-analyze has something to say about the units: {said}"
    );

    // A second install keeps the operator's config.
    std::fs::write(
        at("/etc/adit/adit.toml"),
        "[query]\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    install(root.path());
    assert_eq!(
        std::fs::read_to_string(at("/etc/adit/adit.toml")).unwrap(),
        "[query]\nlisten = \"127.0.0.1:9999\"\n"
    );
}
