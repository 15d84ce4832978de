//! lrmd against real agents, unmodified: `ocf:heartbeat:Dummy` and `Delay` from Debian's
//! resource-agents, Heartbeat's resource.d scripts from Debian's heartbeat, an LSB init script,
//! and small heartbeat-class scripts written into the node's resource.d for what no packaged
//! agent does on purpose (hang, fork a child holding stdout, write a ledger).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use hb_lab::{start_cluster, Node, PATIENCE};
use hbapi::lrmd::{rc, status, AgentId, LrmdProxy, OpResult, OperationCompletedStream};

fn ocf(agent: &str) -> AgentId {
    AgentId {
        class: "ocf".into(),
        provider: "heartbeat".into(),
        agent: agent.into(),
    }
}

fn class(class: &str, agent: &str) -> AgentId {
    AgentId {
        class: class.into(),
        provider: String::new(),
        agent: agent.into(),
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Lrmd {
    proxy: LrmdProxy<'static>,
    results: OperationCompletedStream,
}

impl Lrmd {
    async fn new(node: &Node) -> Lrmd {
        let proxy = LrmdProxy::new(&node.connection).await.unwrap();
        let results = proxy.receive_operation_completed().await.unwrap();
        Lrmd { proxy, results }
    }

    /// The next completion for `resource` (and `action`, when given).
    async fn next_for(&mut self, resource: &str, action: Option<&str>) -> OpResult {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(signal) = self.results.next().await {
                let result = signal.args().unwrap().result;
                if result.resource == resource && action.is_none_or(|a| a == result.action) {
                    return Some(result);
                }
            }
            None
        })
        .await;
        found
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no result for {resource} {action:?} within {PATIENCE:?}"))
    }

    async fn run(
        &mut self,
        resource: &str,
        agent: &AgentId,
        action: &str,
        params: HashMap<String, String>,
        timeout_ms: u32,
    ) -> OpResult {
        let op_id = self
            .proxy
            .execute(resource, agent, action, params, timeout_ms)
            .await
            .unwrap();
        loop {
            let result = self.next_for(resource, Some(action)).await;
            if result.op_id == op_id {
                return result;
            }
        }
    }
}

/// Writes an executable heartbeat-class script into the node's resource.d.
fn script(node: &Node, name: &str, body: &str) -> PathBuf {
    let dir = node.config_dir.join("resource.d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Processes whose environment says they belong to OCF resource `instance`.
fn processes_of_instance(instance: &str) -> Vec<u32> {
    let needle = format!("OCF_RESOURCE_INSTANCE={instance}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn parse_xml(xml: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(xml, options).unwrap_or_else(|e| panic!("not XML ({e}):\n{xml}"))
}

async fn node() -> Vec<Node> {
    start_cluster(&["alpha", "bravo"], |b| b).await
}

#[tokio::test]
async fn dummy_start_monitor_stop_monitor_and_its_meta_data() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let dummy = ocf("Dummy");
    let mut codes = Vec::new();
    for action in ["start", "monitor", "stop", "monitor"] {
        let result = lrmd.run("d1", &dummy, action, HashMap::new(), 20_000).await;
        assert_eq!(result.status, status::DONE, "{result:?}");
        codes.push(result.rc);
    }
    assert_eq!(codes, [rc::OK, rc::OK, rc::OK, rc::NOT_RUNNING]);

    let xml = lrmd.proxy.meta_data(&dummy).await.unwrap();
    let document = parse_xml(&xml);
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "resource-agent");
    assert_eq!(root.attribute("name"), Some("Dummy"));
    let actions: Vec<&str> = root
        .descendants()
        .filter(|n| n.has_tag_name("action"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert!(
        actions.contains(&"monitor") && actions.contains(&"start"),
        "{actions:?}"
    );

    let agents = lrmd.proxy.list_agents("ocf").await.unwrap();
    assert!(agents.iter().any(|a| a == "heartbeat:Dummy"), "{agents:?}");
    let history = lrmd.proxy.history("d1").await.unwrap();
    assert_eq!(
        history.last.iter().find(|r| r.action == "stop").map(|r| r.rc),
        Some(rc::OK)
    );
}

#[tokio::test]
async fn a_hanging_agent_is_killed_at_its_timeout_with_nothing_left() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let result = lrmd
        .run(
            "slow-delay",
            &ocf("Delay"),
            "start",
            params(&[("startdelay", "30")]),
            1000,
        )
        .await;
    assert_eq!(result.status, status::TIMEOUT, "{result:?}");
    assert!(result.duration_ms < 10_000, "{result:?}");
    // SIGKILL lands asynchronously; wait for the processes to be gone, not a fixed time.
    let gone = tokio::time::timeout(PATIENCE, async {
        while !processes_of_instance("slow-delay").is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "left: {:?}", processes_of_instance("slow-delay"));

    script(&nodes[0], "Stubborn", "trap '' TERM\nwhile :; do sleep 1; done\n");
    let result = lrmd
        .run(
            "stubborn",
            &class("heartbeat", "Stubborn"),
            "start",
            HashMap::new(),
            500,
        )
        .await;
    assert_eq!(
        result.status,
        status::TIMEOUT,
        "an agent ignoring SIGTERM is killed too"
    );
}

#[tokio::test]
async fn a_background_child_holding_stdout_does_not_block() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let pid_file = nodes[0].path("background.pid");
    script(
        &nodes[0],
        "Forker",
        &format!(
            "sleep 3600 &\necho $! > {}\necho forked\nexit 0\n",
            pid_file.display()
        ),
    );
    let result = lrmd
        .run(
            "forker",
            &class("heartbeat", "Forker"),
            "start",
            HashMap::new(),
            20_000,
        )
        .await;
    assert_eq!(
        (result.status.as_str(), result.rc),
        (status::DONE, rc::OK),
        "{result:?}"
    );
    assert_eq!(result.output.trim(), "forked");
    assert!(result.duration_ms < 5_000, "{result:?}");
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn parameters_arrive_byte_for_byte_and_paths_are_refused() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let nasty = "a b;c $(touch /tmp/hbrs-pwned) `id` 'q' \"w\" | & > < * ? ~ # \\ %s\nnew line";
    let out = nodes[0].path("args");
    script(
        &nodes[0],
        "Echo",
        &format!("printf '%s|' \"$@\" > {}\n", out.display()),
    );
    let result = lrmd
        .run(
            "echo",
            &class("heartbeat", "Echo"),
            "start",
            params(&[("1", nasty), ("2", "")]),
            20_000,
        )
        .await;
    assert_eq!(result.rc, rc::OK, "{result:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("{nasty}||start|"));

    // Through the environment to an unmodified OCF agent: Dummy keeps its state where told.
    // Dummy itself splits an unquoted path at spaces, so this one has none.
    let dir = nodes[0].path("odd;$(x)");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("st`a`te'x'&|<>");
    let state_text = state.display().to_string();
    let result = lrmd
        .run(
            "odd",
            &ocf("Dummy"),
            "start",
            params(&[("state", &state_text)]),
            20_000,
        )
        .await;
    assert_eq!(result.rc, rc::OK, "{result:?}");
    assert!(state.exists(), "Dummy's state file is at the exact path");
    assert!(!Path::new("/tmp/hbrs-pwned").exists());

    for (provider, agent) in [
        ("heartbeat", "../../../../bin/true"),
        ("..", "Dummy"),
        ("heartbeat", ".."),
    ] {
        let refused = lrmd
            .proxy
            .execute(
                "x",
                &AgentId {
                    class: "ocf".into(),
                    provider: provider.into(),
                    agent: agent.into(),
                },
                "start",
                HashMap::new(),
                1000,
            )
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("InvalidArgument"),
            "{provider}:{agent}: {refused}"
        );
    }
    let missing = lrmd
        .proxy
        .execute("x", &ocf("NoSuchAgent"), "start", HashMap::new(), 1000)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("not installed"), "{missing}");
}

#[tokio::test]
async fn an_lsb_init_script_by_its_exit_codes() {
    let init_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lsb/hbrs-demo"),
        init_dir.path().join("hbrs-demo"),
    )
    .unwrap();
    let init = init_dir.path().display().to_string();
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.env("HB_INIT_DIR", &init)).await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;

    let lsb = class("lsb", "hbrs-demo");
    let mut codes = Vec::new();
    for action in ["monitor", "start", "monitor", "start", "stop", "monitor", "stop"] {
        codes.push(lrmd.run("demo", &lsb, action, HashMap::new(), 20_000).await.rc);
    }
    assert_eq!(
        codes,
        [7, 0, 0, 0, 0, 7, 0],
        "LSB status 3 is not running; start and stop are idempotent"
    );
    let xml = lrmd.proxy.meta_data(&lsb).await.unwrap();
    parse_xml(&xml);
    assert!(xml.contains("heartbeat-rs LSB test service"), "{xml}");

    assert_eq!(
        lrmd.run("demo", &lsb, "stop", HashMap::new(), 20_000).await.rc,
        rc::OK
    );
}

#[tokio::test]
async fn heartbeats_ipaddr_script_adds_and_removes_the_address() {
    // Heartbeat's own resource.d/IPaddr from Debian's heartbeat package, called as haresources'
    // IPaddr::10.9.8.7/24/eth0 would be, in a namespace with an interface of its own.
    let namespace = hb_lab::netns::Namespace::new("ipaddr");
    namespace.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    for device in ["eth0", "eth1"] {
        namespace.exec(&["ip", "link", "set", device, "up"]);
    }
    namespace.exec(&["ip", "addr", "add", "10.9.8.1/24", "dev", "eth0"]);
    let nodes = start_cluster(&["alpha", "bravo"], |b| b.wrapper(&namespace.wrapper())).await;
    std::fs::create_dir_all(nodes[0].config_dir.join("resource.d")).unwrap();
    std::fs::copy(
        "/etc/ha.d/resource.d/IPaddr",
        nodes[0].config_dir.join("resource.d/IPaddr"),
    )
    .unwrap();
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let ipaddr = class("heartbeat", "IPaddr");
    let args = params(&[("1", "10.9.8.7/24/eth0")]);
    let has_address = || {
        let output = std::process::Command::new("ip")
            .args(["-n", &namespace.name, "-o", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).contains("10.9.8.7/24")
    };
    let mut seen = Vec::new();
    for action in ["status", "start", "status", "stop", "status"] {
        let result = lrmd
            .run("IPaddr::10.9.8.7/24/eth0", &ipaddr, action, args.clone(), 20_000)
            .await;
        seen.push((result.rc, has_address()));
    }
    assert_eq!(
        seen,
        [(7, false), (0, true), (0, true), (0, false), (7, false)],
        "status judged Heartbeat's way, and the address really added and removed"
    );
}

#[tokio::test]
async fn one_resource_runs_serially_while_others_run_in_parallel() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let log = nodes[0].path("serial.log");
    let started = nodes[0].path("other.started");
    script(
        &nodes[0],
        "Slow",
        &format!("echo \"begin $1\" >> {log}\nwhile [ ! -e {started} ]; do sleep 0.05; done\necho \"end $1\" >> {log}\n", log = log.display(), started = started.display()),
    );
    script(&nodes[0], "Marker", &format!("touch {}\n", started.display()));
    let slow = class("heartbeat", "Slow");
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            lrmd.proxy
                .execute("serial", &slow, "start", params(&[("1", &n.to_string())]), 20_000)
                .await
                .unwrap(),
        );
    }
    // Slow waits for Marker, which runs for another resource: this only finishes if the two
    // resources run at the same time.
    lrmd.run(
        "other",
        &class("heartbeat", "Marker"),
        "start",
        HashMap::new(),
        20_000,
    )
    .await;
    for _ in 0..3 {
        lrmd.next_for("serial", Some("start")).await;
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "begin 1\nend 1\nbegin 2\nend 2\nbegin 3\nend 3\n");
}

#[tokio::test]
async fn a_recurring_monitor_reports_its_first_result_and_each_change() {
    let nodes = node().await;
    let mut lrmd = Lrmd::new(&nodes[0]).await;
    let state = nodes[0].path("mon.state");
    let state_text = state.display().to_string();
    let dummy = ocf("Dummy");
    let p = params(&[("state", &state_text)]);
    assert_eq!(
        lrmd.run("mon", &dummy, "start", p.clone(), 20_000).await.rc,
        rc::OK
    );
    let monitor = lrmd
        .proxy
        .start_monitor("mon", &dummy, p, 200, 20_000)
        .await
        .unwrap();
    let first = lrmd.next_for("mon", Some("monitor")).await;
    assert_eq!((first.rc, first.interval_ms, first.op_id), (rc::OK, 200, monitor));
    std::fs::remove_file(&state).unwrap();
    let change = lrmd.next_for("mon", Some("monitor")).await;
    assert_eq!(
        change.rc,
        rc::NOT_RUNNING,
        "the failure is reported at its first monitor"
    );
    assert!(lrmd.proxy.stop_monitor("mon").await.unwrap());
}

#[tokio::test]
async fn a_respawned_lrmd_keeps_its_history_and_restarts_nothing() {
    let nodes = node().await;
    let node = &nodes[0];
    let mut lrmd = Lrmd::new(node).await;
    let ledger = node.path("ledger");
    script(
        node,
        "Ledger",
        &format!(
            "case \"$1\" in\nstart) echo start >> {l}; touch {l}.on;;\nstop) echo stop >> {l}; rm -f {l}.on;;\nstatus) [ -e {l}.on ] && echo running || echo stopped;;\nesac\n",
            l = ledger.display()
        ),
    );
    let agent = class("heartbeat", "Ledger");
    assert_eq!(
        lrmd.run("kept", &agent, "start", HashMap::new(), 20_000).await.rc,
        rc::OK
    );
    lrmd.proxy
        .start_monitor("kept", &agent, HashMap::new(), 300, 20_000)
        .await
        .unwrap();
    assert_eq!(lrmd.next_for("kept", Some("monitor")).await.rc, rc::OK);

    // An operation in flight when lrmd dies: Delay's start takes 2 s.
    let delay_params = params(&[("startdelay", "2"), ("mondelay", "0"), ("stopdelay", "0")]);
    lrmd.proxy
        .execute("inflight", &ocf("Delay"), "start", delay_params.clone(), 20_000)
        .await
        .unwrap();
    let pending = tokio::time::timeout(PATIENCE, async {
        loop {
            if !processes_of_instance("inflight").is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(pending.is_ok(), "Delay did not start");
    let old = node.wait_child("lrmd", |c| c.state == "running").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    node.wait_child("lrmd", |c| c.state == "running" && c.pid != old.pid)
        .await;
    hb_lab::wait_name_owner(
        &node.connection,
        hbapi::names::lrmd::BUS_NAME,
        node.wait_child("lrmd", |c| c.state == "running").await.pid,
    )
    .await;

    let mut lrmd = Lrmd::new(node).await;
    let lost = lrmd.next_for("inflight", Some("start")).await;
    assert_eq!(lost.status, status::LOST, "{lost:?}");
    let probe = lrmd.next_for("inflight", Some("monitor")).await;
    assert_eq!(
        probe.rc,
        rc::OK,
        "the orphaned start finished and the probe sees it: {probe:?}"
    );
    let kept = lrmd.proxy.history("kept").await.unwrap();
    assert_eq!(kept.monitor_interval_ms, 300, "the recurring monitor is back");
    assert_eq!(
        kept.last.iter().find(|r| r.action == "start").map(|r| r.rc),
        Some(rc::OK)
    );
    assert_eq!(
        std::fs::read_to_string(&ledger).unwrap(),
        "start\n",
        "nothing was started again"
    );
    lrmd.run("inflight", &ocf("Delay"), "stop", delay_params, 20_000)
        .await;
}

/// Supervisor issue, item 7: a master restarted right after a kill -9 starts an lrmd while the
/// old one may still be stopping resources. The new one waits for the old one to go (it
/// would otherwise probe a resource in mid-stop as running), and no operation id of the old
/// one is ever handed out again (an old result would answer a new request).
#[tokio::test]
async fn a_second_lrmd_waits_for_the_first_and_operation_ids_never_repeat() {
    use tokio::io::AsyncBufReadExt;
    let nodes = node().await;
    let node = &nodes[0];
    let mut lrmd = Lrmd::new(node).await;
    let first = lrmd
        .run("one", &ocf("Dummy"), "start", HashMap::new(), 20_000)
        .await;
    assert_eq!(first.rc, rc::OK);

    let mut second = tokio::process::Command::new(hb_lab::bin("lrmd"))
        .env(hbapi::names::env::STATE_DIR, &node.state_dir)
        .env(hbapi::names::env::RUN_DIR, &node.run_dir)
        .env(hbapi::names::env::CONFIG_DIR, &node.config_dir)
        .env("HB_LOG_STDERR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(second.stderr.take().unwrap()).lines();
    let waiting = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("another lrmd still runs") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(waiting, Ok(true)), "the second lrmd did not wait");
    let owner = hb_lab::name_owner_pid(&node.connection, hbapi::names::lrmd::BUS_NAME).await;
    assert_eq!(
        owner,
        Some(node.child_pid("lrmd").await),
        "the waiting lrmd took the name"
    );
    second.kill().await.unwrap();

    // A respawned lrmd numbers its operations after every id of the one before.
    let old = node.wait_child("lrmd", |c| c.state == "running").await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = node
        .wait_child("lrmd", |c| c.state == "running" && c.pid != old.pid)
        .await;
    hb_lab::wait_name_owner(&node.connection, hbapi::names::lrmd::BUS_NAME, new.pid).await;
    let mut lrmd = Lrmd::new(node).await;
    let later = lrmd
        .run("two", &ocf("Dummy"), "start", HashMap::new(), 20_000)
        .await;
    assert!(later.op_id > first.op_id, "{} after {}", later.op_id, first.op_id);
}
