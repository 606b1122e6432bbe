//! adit's container image and compose file (issue 61), built and started for real: the base
//! image is made from Debian's own packages (`deploy/container/base.sh`: mmdebstrap, then
//! `podman import`; no image registry is reachable here), the image from
//! `deploy/container/Dockerfile` with that base as its build argument, and
//! `deploy/container/compose.yaml` starts adit and a nats-server in their own containers on
//! their own network. From the host, a reading posted to the container's HTTP port lands in a
//! Delta table inside it and answers SQL; a request without a token is refused.
//!
//! podman, podman-compose, mmdebstrap, runc and iptables (netavark's firewall) come from
//! Debian's packages (`scripts/setup.sh`); a missing one fails the test saying so. The test's
//! `containers.conf` suits a host like CI's: runc (crun refuses a host whose cgroups are mixed
//! v1 and v2), limits no higher than the host lets a process raise them, and netavark, whose
//! DNS lets adit reach `nats` by name.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const BASE: &str = "localhost/adit-base:bookworm";

const CONTAINERS_CONF: &str = "[containers]\n\
    default_ulimits = [\"nofile=10000:10000\", \"nproc=4096:4096\"]\n\
    [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
    [network]\nnetwork_backend = \"netavark\"\n";

/// Runs `program` with `args` in `dir` under the test's containers.conf and `env`.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"))
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes the compose project down (containers, network, volumes) and its image away.
struct Project {
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(&'static str, String)>,
}

impl Drop for Project {
    fn drop(&mut self) {
        let dir = self.dir.path();
        run(
            dir,
            "podman-compose",
            &["-p", &self.name, "down", "-v"],
            &self.env,
        );
        run(dir, "podman", &["rmi", "-f", &self.env[0].1], &[]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_built_on_debians_packages_runs_adit_and_nats_and_answers_sql() {
    for tool in [
        "podman",
        "podman-compose",
        "mmdebstrap",
        "runc",
        "iptables",
        "objcopy",
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is missing: scripts/setup.sh installs it"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().to_path_buf();
    let ctx = ctx.as_path();
    std::fs::write(ctx.join("containers.conf"), CONTAINERS_CONF).unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container");
    for file in ["Dockerfile", "compose.yaml", "base.sh"] {
        std::fs::copy(deploy.join(file), ctx.join(file)).unwrap();
    }
    if !run(ctx, "podman", &["image", "exists", BASE], &[])
        .status
        .success()
    {
        ok("base.sh", &run(ctx, "./base.sh", &[BASE], &[]));
    }
    // The binary without its debug sections: what a release build ships, a tenth the size.
    ok(
        "objcopy",
        &run(
            ctx,
            "objcopy",
            &["--strip-debug", env!("CARGO_BIN_EXE_adit"), "adit"],
            &[],
        ),
    );
    let port = free_port();
    std::fs::write(
        ctx.join("adit.toml"),
        format!(
            "data_dir = \"/var/lib/adit\"\n[nats]\nurl = \"nats://nats:4222\"\n\
             [pipelines]\nbatch_max_wait = \"200ms\"\n\
             [query]\nlisten = \"0.0.0.0:8080\"\n\
             tokens = [{{ name = \"reader\", token = \"{READ_TOKEN}\", role = \"read\" }}, \
                       {{ name = \"operator\", token = \"{OPERATE_TOKEN}\", role = \"operate\" }}]\n"
        ),
    )
    .unwrap();
    let name = format!("adit-test-{}", std::process::id());
    let project = Project {
        env: vec![
            ("ADIT_IMAGE", format!("localhost/{name}:latest")),
            ("BASE", BASE.into()),
            ("NATS_IMAGE", BASE.into()),
            ("ADIT_HTTP_PORT", port.to_string()),
        ],
        name,
        dir,
    };
    let compose = |args: &[&str]| {
        let mut all = vec!["-p", &project.name];
        all.extend_from_slice(args);
        run(ctx, "podman-compose", &all, &project.env)
    };
    // podman-compose answers 0 when a build step fails: the image is looked for instead.
    let built = compose(&["build"]);
    ok("podman-compose build", &built);
    ok(
        &format!(
            "podman-compose build (no image made):\n{}",
            String::from_utf8_lossy(&built.stdout)
        ),
        &run(ctx, "podman", &["image", "exists", &project.env[0].1], &[]),
    );
    ok("podman-compose up", &compose(&["up", "-d"]));

    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http
        .get(format!("{url}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "adit's container never answered /health:\n{}",
            String::from_utf8_lossy(&compose(&["logs"]).stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let unauthenticated = http
        .post(format!("{url}/api/v1/sql?format=json"))
        .body("select 1")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let reading = json!({"site": "site-c", "machine": "m-c1", "ts": chrono::Utc::now(),
                         "power_w": 3210.5, "source": "pdu"});
    let posted = http
        .post(format!("{url}/api/v1/ingest/energy"))
        .bearer_auth(OPERATE_TOKEN)
        .json(&reading)
        .send()
        .await
        .unwrap();
    assert!(
        posted.status().is_success(),
        "{}",
        posted.text().await.unwrap()
    );
    let sql = "SELECT machine, power_w FROM energy_readings WHERE site = 'site-c'";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http
            .post(format!("{url}/api/v1/sql?format=json"))
            .header("content-type", "text/plain")
            .body(sql)
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        let rows: serde_json::Value = answer.json().await.unwrap_or_default();
        if rows == json!([{"machine": "m-c1", "power_w": 3210.5}]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reading never answered SQL ({rows}):\n{}",
            String::from_utf8_lossy(&compose(&["logs"]).stdout)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
