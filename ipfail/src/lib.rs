//! `ipfail`: the ping-node plugin. Started by an ha.cf `respawn` line, as with Heartbeat:
//!
//! ```text
//! respawn hacluster /usr/lib/heartbeat/ipfail
//! ping 10.0.0.254 10.0.1.254
//! ```
//!
//! (the master runs this binary for any `…/heartbeat/ipfail` path). It counts the ping
//! nodes hbcomm reports reachable, tells the other nodes' ipfail its count (cluster messages
//! of type `ipfail`), and applies [`policy`]: a node that sees fewer ping nodes than another
//! active node gives up its groups through crmd, and becomes eligible again once its
//! connectivity is as good as anyone's. Options: `--hysteresis TIME` (default 5 s).
//!
//! It reads no configuration file: a plugin started as `hacluster` cannot read authkeys and
//! needs nothing in it. What it needs (auto_failback, the ping nodes) comes from the master
//! and hbcomm over the bus; its log goes to stderr, which the master writes into its own log
//! (ha.cf's logfile, the journal); its state goes to the directory the master gives it.

pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::interface;
use zbus::object_server::SignalEmitter;

use hbapi::comm::{CommProxy, NodeStatus};
use hbapi::crmd::CrmdProxy;
use hbapi::ipfail::{IpfailState, PingCount};
use hbapi::master::HeartbeatProxy;
use hbapi::names;

use crate::policy::{Decision, Policy};

/// Message type of ipfail's cluster messages.
pub const MESSAGE_TYPE: &str = "ipfail";

/// Default hysteresis.
pub const DEFAULT_HYSTERESIS: Duration = Duration::from_secs(5);

/// The served object.
struct IpfailInterface {
    state: Arc<Mutex<IpfailState>>,
}

#[interface(name = "org.heartbeatrs.Ipfail1")]
impl IpfailInterface {
    /// The current state: ping nodes configured, every active node's count, whether this
    /// node has given up, and the last decision with its counts.
    fn state(&self) -> IpfailState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// This node gave up its groups or took them back.
    #[zbus(signal)]
    async fn decided(emitter: &SignalEmitter<'_>, gave_up: bool, reason: &str) -> zbus::Result<()>;
}

/// What ipfail needs of the cluster's configuration, as the master and hbcomm serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ha.cf's `auto_failback` (`on`, `off` or `legacy`).
    pub auto_failback: String,
    /// Ping nodes configured (`ping` and `ping_group` lines).
    pub ping_nodes: u32,
}

/// Whether `settings` let ipfail run; the reason when they do not.
pub fn refusal(settings: &Settings) -> Option<String> {
    if settings.auto_failback == "legacy" {
        return Some("ipfail does not work with auto_failback legacy (as Heartbeat's does not): set auto_failback on or off".into());
    }
    if settings.ping_nodes == 0 {
        return Some("ipfail needs ping nodes (ha.cf ping or ping_group lines) to judge connectivity".into());
    }
    None
}

/// Why ipfail stopped before it could serve.
#[derive(Debug)]
pub enum IpfailError {
    /// The configuration does not let ipfail run (the master must not respawn it).
    Refused(String),
    /// The bus failed.
    Bus(zbus::Error),
}

impl std::fmt::Display for IpfailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(reason) => write!(f, "{reason}"),
            Self::Bus(error) => write!(f, "bus: {error}"),
        }
    }
}

impl std::error::Error for IpfailError {}

impl From<zbus::Error> for IpfailError {
    fn from(error: zbus::Error) -> Self {
        Self::Bus(error)
    }
}

impl From<zbus::fdo::Error> for IpfailError {
    fn from(error: zbus::fdo::Error) -> Self {
        Self::Bus(error.into())
    }
}

/// Learns the settings from the master (its `Parameters`, as Heartbeat's ipfail asks its
/// API for them) and hbcomm (the ping nodes it watches).
async fn settings(master: &HeartbeatProxy<'_>, comm: &CommProxy<'_>) -> Result<Settings, IpfailError> {
    let auto_failback = master
        .parameters()
        .await?
        .into_iter()
        .find(|(name, _)| name == "auto_failback")
        .map(|(_, value)| value)
        .unwrap_or_else(|| "off".into());
    let ping_nodes = comm
        .list_nodes()
        .await?
        .iter()
        .filter(|node| node.is_ping())
        .count();
    Ok(Settings {
        auto_failback,
        ping_nodes: u32::try_from(ping_nodes).unwrap_or(u32::MAX),
    })
}

/// Where a respawned ipfail finds whether it had given up.
fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ipfail.state")
}

fn load_gave_up(state_dir: &Path) -> bool {
    std::fs::read_to_string(state_file(state_dir)).is_ok_and(|text| text.trim() == "gave-up")
}

fn save_gave_up(state_dir: &Path, gave_up: bool) {
    let path = state_file(state_dir);
    let text = if gave_up { "gave-up\n" } else { "eligible\n" };
    if let Err(error) = hbapi::statefile::replace(&path, text.as_bytes(), 0o644) {
        tracing::error!("{}: {error}", path.display());
    }
}

/// How ipfail is run.
pub struct Options {
    /// This node.
    pub node: String,
    /// Bus address.
    pub bus_address: String,
    /// Where its state is kept.
    pub state_dir: PathBuf,
    /// How long a change of counts must hold before it is acted on.
    pub hysteresis: Duration,
}

fn count_body(op: &str, count: u32) -> HashMap<String, String> {
    HashMap::from([
        ("op".to_owned(), op.to_owned()),
        ("count".to_owned(), count.to_string()),
    ])
}

/// Runs ipfail until `shutdown` resolves; refuses (before taking its bus name) when the
/// configuration does not let it run.
pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), IpfailError> {
    let connection = hbapi::bus::connect(&options.bus_address).await?;
    hbapi::bus::wait_for_name(&connection, names::master::BUS_NAME).await;
    hbapi::bus::wait_for_name(&connection, names::comm::BUS_NAME).await;
    let master = HeartbeatProxy::new(&connection).await?;
    let comm = CommProxy::new(&connection).await?;
    let settings = settings(&master, &comm).await?;
    if let Some(reason) = refusal(&settings) {
        return Err(IpfailError::Refused(reason));
    }
    let ping_total = settings.ping_nodes;
    let state = Arc::new(Mutex::new(IpfailState {
        ping_nodes: ping_total,
        counts: Vec::new(),
        gave_up: false,
        pending: false,
        last_decision: String::new(),
    }));
    connection
        .object_server()
        .at(
            names::ipfail::OBJECT_PATH,
            IpfailInterface { state: state.clone() },
        )
        .await?;
    connection.request_name(names::ipfail::BUS_NAME).await?;
    let emitter = SignalEmitter::new(&connection, names::ipfail::OBJECT_PATH)?.into_owned();
    hbapi::bus::wait_for_name(&connection, names::crmd::BUS_NAME).await;
    let crmd = CrmdProxy::new(&connection).await?;
    let mut node_changes = comm.receive_node_status_changed().await?;
    let mut messages = comm.receive_message_received().await?;

    // Ping nodes by name with whether they answer; normal nodes with whether they are up.
    let mut pings: BTreeMap<String, bool> = BTreeMap::new();
    let mut active: BTreeMap<String, bool> = BTreeMap::new();
    for node in comm.list_nodes().await? {
        let status = node.node_status();
        if node.is_ping() {
            pings.insert(node.name, status == NodeStatus::Ping);
        } else {
            active.insert(node.name, status.is_alive());
        }
    }
    let local_count = |pings: &BTreeMap<String, bool>| {
        u32::try_from(pings.values().filter(|up| **up).count()).unwrap_or(u32::MAX)
    };
    let mut policy = Policy::new(options.hysteresis, load_gave_up(&options.state_dir));
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut local = local_count(&pings);
    tracing::info!(node = %options.node, count = local, of = ping_total, gave_up = policy.gave_up(), "ipfail started");
    let _ = comm
        .send_message("", MESSAGE_TYPE, count_body("hello", local))
        .await;
    tokio::pin!(shutdown);
    loop {
        let deadline = policy.deadline();
        tokio::select! {
            () = &mut shutdown => break,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
            Some(signal) = node_changes.next() => {
                let Ok(args) = signal.args() else { continue };
                let node = args.node.to_owned();
                let new = NodeStatus::parse(args.new).unwrap_or(NodeStatus::Dead);
                if let Some(up) = pings.get_mut(&node) {
                    *up = new == NodeStatus::Ping;
                    let now = local_count(&pings);
                    if now != local {
                        local = now;
                        tracing::warn!(count = local, of = ping_total, "this node now reaches {local} of {ping_total} ping nodes");
                        let _ = comm.send_message("", MESSAGE_TYPE, count_body("count", local)).await;
                    }
                } else if node != options.node {
                    let up = new.is_alive();
                    active.insert(node.clone(), up);
                    if !up {
                        counts.remove(&node);
                    }
                }
            }
            Some(signal) = messages.next() => {
                let Ok(args) = signal.args() else { continue };
                if args.msg_type != MESSAGE_TYPE || args.from == options.node {
                    continue;
                }
                // Counts above the configured number cannot be right; they are capped.
                let Some(count) = args.body.get("count").and_then(|c| c.parse::<u32>().ok()) else { continue };
                counts.insert(args.from.to_owned(), count.min(ping_total));
                if args.body.get("op").is_some_and(|op| op == "hello") {
                    let _ = comm.send_message(args.from, MESSAGE_TYPE, count_body("count", local)).await;
                }
            }
        }
        let peers: Vec<u32> = counts
            .iter()
            .filter(|(node, _)| active.get(*node).copied().unwrap_or(false))
            .map(|(_, count)| *count)
            .collect();
        let decision = policy.observe(std::time::Instant::now(), local, &peers);
        let mut listed = vec![format!("{} {local}", options.node)];
        listed.extend(
            counts
                .iter()
                .filter(|(node, _)| active.get(*node).copied().unwrap_or(false))
                .map(|(node, count)| format!("{node} {count}")),
        );
        let described = format!("ping nodes reached (of {ping_total}): {}", listed.join(", "));
        if let Some(decision) = decision {
            let give_up = decision == Decision::GiveUp;
            let reason = if give_up {
                format!("{described}: {} gives up its groups", options.node)
            } else {
                format!("{described}: {} may run groups again", options.node)
            };
            tracing::warn!("{reason}");
            save_gave_up(&options.state_dir, give_up);
            if let Err(error) = crmd.connectivity(give_up, &reason).await {
                tracing::error!("crmd did not take ipfail's decision: {error}");
            }
            let _ = IpfailInterface::decided(&emitter, give_up, &reason).await;
            if let Ok(mut state) = state.lock() {
                state.last_decision = reason;
            }
        }
        if let Ok(mut state) = state.lock() {
            state.gave_up = policy.gave_up();
            state.pending = policy.deadline().is_some();
            state.counts = std::iter::once(PingCount {
                node: options.node.clone(),
                count: local,
            })
            .chain(
                counts
                    .iter()
                    .filter(|(node, _)| active.get(*node).copied().unwrap_or(false))
                    .map(|(node, count)| PingCount {
                        node: node.clone(),
                        count: *count,
                    }),
            )
            .collect();
        }
    }
    tracing::info!("ipfail stopped");
    Ok(())
}

fn parse_hysteresis(args: &[String]) -> Result<Duration, String> {
    let mut hysteresis = DEFAULT_HYSTERESIS;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--hysteresis" => {
                let value = words
                    .next()
                    .ok_or("--hysteresis needs a time, e.g. 5s or 500ms")?;
                hysteresis =
                    hbapi::config::parse_time(value).map_err(|e| format!("--hysteresis {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(hysteresis)
}

/// `ipfail`'s entry point: settings from the master's environment, `--hysteresis` from the
/// respawn line.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("usage: ipfail [--hysteresis TIME]\nStarted by the heartbeat master from an ha.cf line such as:\n  respawn hacluster /usr/lib/heartbeat/ipfail");
        return ExitCode::SUCCESS;
    }
    let hysteresis = match parse_hysteresis(&args) {
        Ok(hysteresis) => hysteresis,
        Err(message) => {
            eprintln!("ipfail: {message}");
            return hbapi::daemon::no_respawn();
        }
    };
    let debug = std::env::var(names::env::DEBUG)
        .ok()
        .and_then(|level| level.parse::<u8>().ok())
        .unwrap_or(0);
    // stderr only: the master writes it into ha.cf's logfile and the journal.
    hbapi::logging::init_with(
        "ipfail",
        hbapi::logging::level_for_debug(debug),
        &hbapi::config::Logging::default(),
    );
    let node = match hbapi::daemon::node_name("ipfail") {
        Ok(node) => node,
        Err(code) => return code,
    };
    let run_dir = PathBuf::from(hbapi::daemon::env_or(names::env::RUN_DIR, "/run/heartbeat"));
    let state_dir = PathBuf::from(hbapi::daemon::env_or(names::env::STATE_DIR, "/var/lib/heartbeat"));
    let Some(bus_address) = hbapi::bus::find_address(&run_dir) else {
        tracing::error!("no bus address: ipfail is started by the heartbeat master");
        return ExitCode::FAILURE;
    };
    let options = Options {
        node,
        bus_address,
        state_dir,
        hysteresis,
    };
    hbapi::daemon::block_on("ipfail", async move {
        match run(options, hbapi::daemon::terminated()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(IpfailError::Refused(reason)) => {
                tracing::error!("configuration refused: {reason}");
                hbapi::daemon::no_respawn()
            }
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_option_and_refusals() {
        assert_eq!(parse_hysteresis(&[]), Ok(DEFAULT_HYSTERESIS));
        assert_eq!(
            parse_hysteresis(&["--hysteresis".into(), "500ms".into()]),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_hysteresis(&["--hysteresis".into()]).is_err());
        assert!(parse_hysteresis(&["--frobnicate".into()]).is_err());
    }

    #[test]
    fn refuses_where_it_cannot_work_as_heartbeats_does() {
        let settings = |auto_failback: &str, ping_nodes| Settings {
            auto_failback: auto_failback.into(),
            ping_nodes,
        };
        assert_eq!(refusal(&settings("off", 2)), None);
        assert_eq!(refusal(&settings("on", 1)), None);
        assert!(refusal(&settings("legacy", 2)).is_some_and(|r| r.contains("auto_failback legacy")));
        assert!(refusal(&settings("off", 0)).is_some_and(|r| r.contains("ping nodes")));
    }

    #[test]
    fn the_decision_survives_a_respawn() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!load_gave_up(dir.path()));
        save_gave_up(dir.path(), true);
        assert!(load_gave_up(dir.path()));
        save_gave_up(dir.path(), false);
        assert!(!load_gave_up(dir.path()));
    }

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::contract::{self, Calls};
        use hbapi::ipfail::{IpfailProxy, IpfailState};
        use hbapi::names::ipfail::{INTERFACE, OBJECT_PATH};
        use zbus::object_server::SignalEmitter;

        let state = IpfailState {
            ping_nodes: 2,
            counts: Vec::new(),
            gave_up: false,
            pending: false,
            last_decision: String::new(),
        };
        let interface = super::IpfailInterface {
            state: std::sync::Arc::new(std::sync::Mutex::new(state)),
        };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();
        let proxy = IpfailProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        assert_eq!(
            calls
                .call("method State", proxy.state().await)
                .unwrap()
                .ping_nodes,
            2
        );
        let mut decided = proxy.receive_decided().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        super::IpfailInterface::decided(&emitter, true, "contract")
            .await
            .unwrap();
        let signal = decided.next().await.unwrap();
        calls.signal("signal Decided", signal.args().map(|a| assert!(*a.gave_up())));
        calls.verdict(INTERFACE).unwrap();
    }
}
