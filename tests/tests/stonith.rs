//! Fencing: our `stonith` against cluster-glue's real one (Debian's cluster-glue), fence_dummy
//! from Debian's fence-agents through stonithd, meatware with meatclient, and a plugin that
//! hangs.

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use hb_lab::{bin, start_cluster, Node, PATIENCE};
use hbapi::stonith::{FenceFinishedStream, FenceRecord, StonithProxy};

const GLUE_STONITH: &str = "/usr/sbin/stonith";

fn ours(args: &[&str]) -> (i32, String) {
    let output = Command::new(bin("stonith")).args(args).output().unwrap();
    let code = output.status.code().unwrap_or_else(|| {
        panic!(
            "stonith {args:?} died: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn glue(args: &[&str]) -> (i32, String) {
    assert!(
        std::path::Path::new(GLUE_STONITH).exists(),
        "{GLUE_STONITH} missing: install Debian's cluster-glue (.ci/run does)"
    );
    let output = Command::new(GLUE_STONITH).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_stonith_command_prints_what_cluster_glues_prints() {
    let (code, listed) = ours(&["-L"]);
    assert_eq!(code, 0);
    let types: Vec<&str> = listed.lines().collect();
    for expected in [
        "null",
        "meatware",
        "suicide",
        "ssh",
        "external/ssh",
        "external/ipmi",
        "fence_dummy",
    ] {
        assert!(types.contains(&expected), "{expected} missing from -L: {types:?}");
    }
    let (_, glue_listed) = glue(&["-L"]);
    for external in glue_listed.lines().filter(|t| t.starts_with("external/")) {
        assert!(types.contains(&external), "glue lists {external}, we do not");
    }
    for device_type in [
        "external/ssh",
        "meatware",
        "null",
        "ssh",
        "suicide",
        "external/ipmi",
        "external/libvirt",
    ] {
        for option in ["-n", "-m"] {
            assert_eq!(
                ours(&["-t", device_type, option]),
                glue(&["-t", device_type, option]),
                "stonith -t {device_type} {option}"
            );
        }
    }
    assert_eq!(
        ours(&["-t", "null", "-p", "alpha bravo", "-l"]),
        glue(&["-t", "null", "-p", "alpha bravo", "-l"])
    );
    assert_eq!(
        ours(&["-t", "nosuch", "-n"]).0,
        glue(&["-t", "nosuch", "-n"]).0,
        "exit code of an unknown type"
    );

    let (_, json) = ours(&["-L", "--json"]);
    let parsed: Vec<String> = serde_json::from_str(&json).expect("-L --json");
    assert_eq!(parsed, types);
    let (_, json) = ours(&["-t", "fence_dummy", "-n", "--json"]);
    let names: Vec<String> = serde_json::from_str(&json).expect("-n --json");
    assert!(names.iter().any(|n| n == "status_file"), "{names:?}");
    let (code, help) = ours(&["-h"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("STONITH Device: external/ssh - ssh-based host reset"),
        "{help}"
    );
}

struct Fencing {
    proxy: StonithProxy<'static>,
    finished: FenceFinishedStream,
}

impl Fencing {
    async fn new(node: &Node) -> Fencing {
        let proxy = StonithProxy::new(&node.connection).await.unwrap();
        let finished = proxy.receive_fence_finished().await.unwrap();
        Fencing { proxy, finished }
    }

    async fn outcome(&mut self, op_id: u64) -> FenceRecord {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(signal) = self.finished.next().await {
                let record = signal.args().unwrap().record;
                if record.op_id == op_id {
                    return Some(record);
                }
            }
            None
        })
        .await;
        found.ok().flatten().expect("FenceFinished")
    }
}

/// Pids whose command line contains `needle`, and whether any argv holds `secret`.
fn scan_processes(needle: &str, secret: &str) -> (usize, bool) {
    let mut seen = 0;
    let mut leaked = false;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        if text.contains(needle) {
            seen += 1;
        }
        if text.contains(secret) {
            leaked = true;
        }
    }
    (seen, leaked)
}

#[tokio::test]
async fn fence_dummy_fences_through_stonithd_without_its_password_on_any_command_line() {
    let root = tempfile::tempdir().unwrap();
    let status_file = root.path().join("power");
    std::fs::write(&status_file, "on").unwrap();
    let secret = "S3cret-only-on-stdin";
    let line = format!(
        "stonith_host * fence_dummy status_file={} random_sleep_range=1 pcmk_host_list=bravo password={secret}",
        status_file.display()
    );
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.ha_cf(line.clone())).await;
    let mut fencing = Fencing::new(&nodes[0]).await;
    let devices = fencing.proxy.list_devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].hosts, ["bravo"]);

    let op_id = fencing
        .proxy
        .fence("bravo", "off", "lab: node lost")
        .await
        .unwrap();
    let mut agent_seen = 0;
    let record = loop {
        let (seen, leaked) = scan_processes("fence_dummy", secret);
        assert!(!leaked, "the password appeared in a command line");
        agent_seen += seen;
        tokio::select! {
            record = fencing.outcome(op_id) => break record,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    };
    assert!(
        agent_seen > 0,
        "fence_dummy was never seen running, so the check above proved nothing"
    );
    assert!(record.ok, "{record:?}");
    assert_eq!(
        (
            record.target.as_str(),
            record.reason.as_str(),
            record.requested_by
        ),
        ("bravo", "lab: node lost", 0)
    );
    assert_eq!(std::fs::read_to_string(&status_file).unwrap(), "off");

    let refused = fencing
        .proxy
        .fence("charlie", "reboot", "nobody can")
        .await
        .unwrap();
    let record = fencing.outcome(refused).await;
    assert!(
        !record.ok && record.message.contains("no configured device"),
        "{record:?}"
    );
    let history = fencing.proxy.history().await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.op_id).collect::<Vec<_>>(),
        [op_id, refused]
    );
}

#[tokio::test]
async fn meatware_waits_for_meatclient_and_fails_at_its_timeout() {
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.ha_cf("stonith_host * meatware hostlist=bravo pcmk_reboot_timeout=2 pcmk_reboot_retries=0")
    })
    .await;
    let mut fencing = Fencing::new(&nodes[0]).await;
    let mut started = fencing.proxy.receive_fence_started().await.unwrap();
    let op_id = fencing.proxy.fence("bravo", "reboot", "lab").await.unwrap();
    tokio::time::timeout(PATIENCE, started.next())
        .await
        .unwrap()
        .unwrap();
    // The fence is waiting now; meatclient releases it.
    let confirm = async {
        loop {
            let output = tokio::process::Command::new(bin("meatclient"))
                .args(["-c", "bravo", "--yes"])
                .env(hbapi::names::env::BUS_ADDRESS, &nodes[0].address)
                .output()
                .await
                .unwrap();
            if output.status.success() {
                return;
            }
            // Started is signalled just before the device begins to wait.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, confirm)
        .await
        .expect("meatclient never succeeded");
    let record = fencing.outcome(op_id).await;
    assert!(record.ok, "{record:?}");
    assert_eq!(record.confirmed_by, 0, "root confirmed");

    let unconfirmed = fencing.proxy.fence("bravo", "reboot", "lab").await.unwrap();
    let record = fencing.outcome(unconfirmed).await;
    assert!(!record.ok && record.message.contains("timed out"), "{record:?}");
    assert!(record.duration_ms >= 2000, "{record:?}");
    let output = tokio::process::Command::new(bin("meatclient"))
        .args(["-c", "bravo", "--yes"])
        .env(hbapi::names::env::BUS_ADDRESS, &nodes[0].address)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "nothing waits any more");
}

#[tokio::test]
async fn a_hanging_plugin_is_killed_at_its_timeout() {
    let plugins = tempfile::tempdir().unwrap();
    let plugin = plugins.path().join("hang");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncase \"$1\" in\ngethosts) echo bravo;;\nreset) trap '' TERM; sleep 3600; sleep 3600;;\ngetconfignames) echo hostlist;;\n*) exit 0;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = plugins.path().display().to_string();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.env("HB_STONITH_EXTERNAL_DIR", &dir)
            .ha_cf("stonith_host * external/hang hostlist=bravo pcmk_reboot_timeout=1 pcmk_reboot_retries=0")
    })
    .await;
    let mut fencing = Fencing::new(&nodes[0]).await;
    let op_id = fencing.proxy.fence("bravo", "reboot", "lab").await.unwrap();
    let record = fencing.outcome(op_id).await;
    assert!(!record.ok && record.message.contains("timed out"), "{record:?}");
    let plugin_path = plugin.display().to_string();
    let gone = tokio::time::timeout(PATIENCE, async {
        while scan_processes(&plugin_path, "\0never\0").0 > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the hung plugin survived its timeout");
}

/// `busctl call` arguments of the two public methods that run programs.
const LIST_DEVICES: &[&str] = &[
    hbapi::names::stonithd::BUS_NAME,
    hbapi::names::stonithd::OBJECT_PATH,
    hbapi::names::stonithd::INTERFACE,
    "ListDevices",
];
const META_DATA: &[&str] = &[
    hbapi::names::lrmd::BUS_NAME,
    hbapi::names::lrmd::OBJECT_PATH,
    hbapi::names::lrmd::INTERFACE,
    "MetaData",
    "(sss)",
    "ocf",
    "lab",
    "Counted",
];

/// The most processes of one program that ran at once, from its `start`/`end` log lines.
fn most_at_once(log: &str) -> usize {
    let (mut running, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.starts_with("start ") {
            running += 1;
            most = most.max(running);
        } else if line.starts_with("end ") {
            running = running.saturating_sub(1);
        }
    }
    most
}

/// `ListDevices` and `MetaData` are open to every local user and run programs as root (a
/// device's host listing with its credentials, an OCF agent). A crowd of unprivileged callers
/// asking for both for ten seconds must not start a process per question, must never run two
/// operations on one fencing device at once, and must not keep a real fence from finishing.
#[tokio::test]
async fn a_crowd_of_unprivileged_callers_cannot_flood_processes_or_hold_up_a_fence() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugin_log = root.path().join("plugin.log");
    let agent_log = root.path().join("agent.log");
    for log in [&plugin_log, &agent_log] {
        std::fs::write(log, "").unwrap();
        std::fs::set_permissions(log, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let plugin = plugins.join("slowlist");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nlog={log}\ncase \"$1\" in\n\
             gethosts) echo \"start $$ list\" >>$log; sleep 0.3; echo bravo; echo \"end $$ list\" >>$log;;\n\
             reset|off|on) echo \"start $$ $1\" >>$log; sleep 0.3; echo \"end $$ $1\" >>$log;;\n\
             getconfignames) echo hostlist;;\n*) exit 0;;\nesac\n",
            log = plugin_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ocf_root = root.path().join("ocf");
    let provider = ocf_root.join("resource.d").join("lab");
    std::fs::create_dir_all(&provider).unwrap();
    let agent = provider.join("Counted");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\nlog={log}\ncase \"$1\" in\n\
             meta-data) echo \"start $$ meta-data\" >>$log; sleep 0.2; \
             echo '<?xml version=\"1.0\"?><resource-agent name=\"Counted\"><parameters/></resource-agent>'; \
             echo \"end $$ meta-data\" >>$log;;\n*) exit 7;;\nesac\n",
            log = agent_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();

    let plugin_dir = plugins.display().to_string();
    let ocf_dir = ocf_root.display().to_string();
    let nodes = start_cluster(&["alpha", "bravo"], |b| {
        b.env("HB_STONITH_EXTERNAL_DIR", &plugin_dir)
            .env("OCF_ROOT", &ocf_dir)
            .ha_cf("stonith_host * external/slowlist pcmk_reboot_timeout=5 pcmk_reboot_retries=0")
    })
    .await;
    let alpha = &nodes[0];
    // Opens the bus socket to everyone, and proves `nobody` can call both.
    for call in [LIST_DEVICES, META_DATA] {
        let (ok, stderr) = alpha.call_as_nobody(call).await;
        assert!(ok, "{call:?} as nobody: {stderr}");
    }

    let crowd_until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut crowd = tokio::task::JoinSet::new();
    for caller in 0..8 {
        let address = alpha.address.clone();
        crowd.spawn(async move {
            let mut calls = 0u32;
            while tokio::time::Instant::now() < crowd_until {
                let args = if caller % 2 == 0 { LIST_DEVICES } else { META_DATA };
                let (ok, stderr) = hb_lab::busctl_as_nobody(&address, args).await;
                assert!(ok, "{args:?}: {stderr}");
                calls += 1;
            }
            calls
        });
    }
    let mut fencing = Fencing::new(alpha).await;
    let op_id = fencing
        .proxy
        .fence("bravo", "reboot", "lab: during the crowd")
        .await
        .unwrap();
    let record = fencing.outcome(op_id).await;
    assert!(record.ok, "the fence failed under the crowd: {record:?}");
    let mut calls = 0;
    while let Some(done) = crowd.join_next().await {
        calls += done.unwrap();
    }
    assert!(calls > 40, "the crowd made only {calls} calls: it proved nothing");

    let plugin_runs = std::fs::read_to_string(&plugin_log).unwrap();
    let listings = plugin_runs.matches("list").count() / 2;
    let resets = plugin_runs.matches("reset").count() / 2;
    assert_eq!(resets, 1, "{plugin_runs}");
    assert!(
        listings <= 2,
        "{listings} host listings for {calls} calls (one a minute expected):\n{plugin_runs}"
    );
    assert_eq!(
        most_at_once(&plugin_runs),
        1,
        "two operations on one device at once:\n{plugin_runs}"
    );
    let agent_runs = std::fs::read_to_string(&agent_log).unwrap();
    assert_eq!(
        agent_runs.matches("start").count(),
        1,
        "meta-data ran more than once for one agent file:\n{agent_runs}"
    );
}
