//! `hbcomm`: heartbeats on every link, membership, and the bus API for them.
//!
//! The loop is the I/O around two pure parts: [`crate::membership`] decides who is alive,
//! [`replay::ReplayGuard`] decides which packets are new. Each received packet goes through
//! the bounded framing check, authentication and only then decoding ([`crate::wire`]).

pub mod iface;
pub mod media;
pub mod replay;
pub mod state;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use hbapi::comm::{LinkInfo, NodeInfo};
use hbapi::config::{AuthMethod, ClusterConfig};
use hbapi::names;

use crate::membership::{Input, Membership, NodeKind, NodeStatus, Output};
use crate::wire::{self, Authenticator, Format, Limits, Message, WireError};

use self::iface::{CommInterface, Snapshot};
use self::replay::{ReplayGuard, Verdict};

/// Heartbeat writes every number on the wire in hex: seq, hg, ts, dt, ackseq.
/// Heartbeat's protocol version field.
const PROTOCOL: &str = "1";
/// Field carrying our digest of the resource configuration and key id (Heartbeat ignores it).
const CONFIG_DIGEST_FIELD: &str = "hbrs_cfd";

/// How hbcomm is run.
#[derive(Debug, Clone)]
pub struct CommOptions {
    /// This node.
    pub node: String,
    /// State directory (generation, uuid).
    pub state_dir: PathBuf,
    /// Bus address.
    pub bus_address: String,
    /// Bind to this address instead of devices (several nodes on one host).
    pub bind: Option<IpAddr>,
    /// Accept `crc` (no security) anyway.
    pub insecure_crc: bool,
}

/// Errors that stop hbcomm.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// Configuration refused.
    #[error("{0}")]
    Config(String),
    /// Links could not be opened.
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// State directory.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Bus.
    #[error("bus: {0}")]
    Bus(#[from] zbus::Error),
}

/// A digest of what must be identical on every node: resource groups and the key in force.
pub fn config_digest(config: &ClusterConfig) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("{:?}", config.groups));
    hasher.update(format!(
        "key {} {}",
        config.auth.active,
        config.auth.active_key().map_or("", |k| k.method.as_str())
    ));
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Received {
    link: usize,
    bytes: Vec<u8>,
}

/// Runs hbcomm until `shutdown` resolves.
pub async fn run(
    options: CommOptions,
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), CommError> {
    let authenticator = Authenticator::from_keys(&config.auth)
        .ok_or_else(|| CommError::Config("authkeys: the active key is missing".into()))?;
    if authenticator.method() == AuthMethod::Crc && !options.insecure_crc {
        return Err(CommError::Config(
            "authkeys selects crc, which has no key: anyone who can send UDP to this cluster could forge heartbeats and take over resources. Use sha256 (or sha1 with Heartbeat nodes); start hbcomm with --insecure-crc only on a network nobody else can reach".into(),
        ));
    }
    std::fs::create_dir_all(&options.state_dir)
        .map_err(|e| CommError::Config(format!("{}: {e}", options.state_dir.display())))?;
    let generation = state::next_generation(&options.state_dir)?;
    let uuid = state::node_uuid(&options.state_dir)?;
    let links = media::open(&config, options.bind)?;
    let link_names: Vec<String> = {
        let mut names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
        names.dedup();
        names
    };
    let ping_names: Vec<String> = config.ping_nodes.iter().map(|p| p.name()).collect();
    let now = Instant::now();
    let mut membership = Membership::new(
        &options.node,
        &config.nodes,
        &ping_names,
        &link_names,
        config.timing,
        now,
    );
    let mut guard = ReplayGuard::new(config.timing.keepalive);
    let limits = Limits::default();
    let digest = config_digest(&config);
    let mut mismatches_reported: Vec<String> = Vec::new();

    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let interface = CommInterface {
        local_node: options.node.clone(),
        generation,
        snapshot: snapshot.clone(),
    };
    let connection = zbus::connection::Builder::address(options.bus_address.as_str())
        .method_timeout(hbapi::bus::METHOD_TIMEOUT)
        .serve_at(names::comm::OBJECT_PATH, interface)
        .name(names::comm::BUS_NAME)
        .build()
        .await?;
    let emitter = SignalEmitter::new(&connection, names::comm::OBJECT_PATH)?.into_owned();
    tracing::info!(node = %options.node, generation, links = ?link_names, "hbcomm started");

    let (received_tx, mut received) = mpsc::channel::<Received>(1024);
    for (index, link) in links.iter().enumerate() {
        let socket = link.socket.clone();
        let tx = received_tx.clone();
        let shared = snapshot.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            loop {
                let Ok((length, _from)) = socket.recv_from(&mut buffer).await else {
                    continue;
                };
                if tx
                    .try_send(Received {
                        link: index,
                        bytes: buffer[..length].to_vec(),
                    })
                    .is_err()
                {
                    bump(&shared, "dropped_queue_full");
                }
            }
        });
    }

    let mut seq: u64 = 0;
    let mut keepalive = tokio::time::interval(config.timing.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadtime_hex = format!("{:x}", config.timing.deadtime.as_millis());
    let generation_hex = format!("{generation:x}");
    tokio::pin!(shutdown);
    publish(&snapshot, &membership, &options.node, Instant::now());
    loop {
        let deadline = membership.next_deadline().map(tokio::time::Instant::from_std);
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at + Duration::from_millis(1)).await,
                None => std::future::pending().await,
            }
        };
        let mut outputs = Vec::new();
        tokio::select! {
            () = &mut shutdown => break,
            _ = keepalive.tick() => {
                seq += 1;
                let message = Message::new()
                    .with("t", "status")
                    .with("st", "active")
                    .with("dt", deadtime_hex.as_str())
                    .with("protocol", PROTOCOL)
                    .with("src", options.node.as_str())
                    .with_binary("srcuuid", &uuid)
                    .with("seq", format!("{seq:x}"))
                    .with("hg", generation_hex.as_str())
                    .with("ts", format!("{:x}", unix_time()))
                    .with("ld", load_average())
                    .with("ttl", "3")
                    .with(CONFIG_DIGEST_FIELD, digest.as_str());
                let packet = wire::encode(&message, Format::Netstring, &authenticator);
                for link in &links {
                    for destination in &link.destinations {
                        match link.socket.send_to(&packet, destination).await {
                            Ok(_) => bump(&snapshot, "sent"),
                            Err(error) => {
                                bump(&snapshot, "send_errors");
                                tracing::debug!(link = %link.name, %destination, "send failed: {error}");
                            }
                        }
                    }
                }
            }
            Some(packet) = received.recv() => {
                let now = Instant::now();
                bump(&snapshot, "received");
                let link = &links[packet.link].name;
                match wire::receive(&packet.bytes, &authenticator, &limits) {
                    Err(error) => {
                        let reason = match error {
                            WireError::Auth(_) | WireError::NoAuth => "dropped_forged",
                            WireError::TooLarge(_) => "dropped_oversized",
                            _ => "dropped_malformed",
                        };
                        bump(&snapshot, reason);
                        tracing::debug!(%link, "packet dropped: {error}");
                    }
                    Ok((message, _)) => {
                        let (Some(src), Some(hg), Some(packet_seq)) = (
                            message.get("src"),
                            message.get("hg").and_then(|h| u32::from_str_radix(h, 16).ok()),
                            message.get("seq").and_then(|s| u64::from_str_radix(s, 16).ok()),
                        ) else {
                            // Heartbeat's acks and retransmission requests carry no seq.
                            bump(&snapshot, &format!("received_{}", message.get("t").unwrap_or("untyped")));
                            continue;
                        };
                        if src == options.node {
                            continue;
                        }
                        match guard.check(src, hg, packet_seq, now) {
                            Verdict::Replay => {
                                bump(&snapshot, "dropped_replay");
                                tracing::debug!(%link, src, hg, seq = packet_seq, "replayed packet dropped");
                            }
                            verdict => {
                                if message.get("t") == Some("status") {
                                    let status = NodeStatus::from_heartbeat(message.get("st").unwrap_or("active"));
                                    outputs.extend(membership.handle(Input::Heard { node: src.to_owned(), link: link.clone(), status }, now));
                                }
                                if verdict == Verdict::Fresh {
                                    if let Some(theirs) = message.get(CONFIG_DIGEST_FIELD) {
                                        if theirs != digest && !mismatches_reported.iter().any(|n| n == src) {
                                            mismatches_reported.push(src.to_owned());
                                            tracing::error!(node = src, theirs, ours = %digest, "CONFIGURATION MISMATCH: {src} runs other resource groups or another authentication key than this node; haresources/ha.toml and authkeys must be identical on every node");
                                            let _ = CommInterface::config_mismatch(&emitter, src, theirs, &digest).await;
                                        }
                                    }
                                } else {
                                    bump(&snapshot, "duplicates");
                                }
                            }
                        }
                    }
                }
            }
            () = timer => {
                outputs.extend(membership.handle(Input::Tick, Instant::now()));
            }
        }
        if outputs.is_empty() {
            continue;
        }
        for output in &outputs {
            match output {
                Output::NodeStatus { node, old, new } => {
                    if *new == NodeStatus::Dead {
                        tracing::warn!(node = %node, "node {node}: status dead");
                    } else {
                        tracing::info!(node = %node, "node {node}: status {}", new.as_str());
                    }
                    let _ =
                        CommInterface::node_status_changed(&emitter, node, old.as_str(), new.as_str()).await;
                }
                Output::LinkStatus { node, link, up } => {
                    tracing::info!(node = %node, link = %link, "link {node}:{link} {}", if *up { "up" } else { "dead" });
                    let _ = CommInterface::link_status_changed(&emitter, node, link, *up).await;
                }
                Output::LateHeartbeat { node, silent_for } => {
                    tracing::warn!(node = %node, "Late heartbeat: node {node}: no heartbeat for {} ms (warntime {} ms)", silent_for.as_millis(), config.timing.warntime.as_millis());
                }
                Output::Returned { node, silent_for } => {
                    tracing::warn!(node = %node, "node {node} is back after {} ms of silence (partition healed or node restarted)", silent_for.as_millis());
                }
                Output::Unknown { node } => {
                    bump(&snapshot, "dropped_unknown_node");
                    tracing::warn!("heartbeat from {node:?}, which is not a configured node");
                }
            }
        }
        publish(&snapshot, &membership, &options.node, Instant::now());
    }
    tracing::info!("hbcomm stopping");
    Ok(())
}

/// Counts one event in the counters the bus interface serves (no copy kept elsewhere).
fn bump(snapshot: &Mutex<Snapshot>, key: &str) {
    if let Ok(mut shared) = snapshot.lock() {
        match shared.counters.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                shared.counters.insert(key.to_owned(), 1);
            }
        }
    }
}

fn publish(snapshot: &Mutex<Snapshot>, membership: &Membership, local: &str, now: Instant) {
    let mut nodes = vec![NodeInfo {
        name: local.to_owned(),
        kind: "normal".into(),
        status: NodeStatus::Active.as_str().into(),
        links: Vec::new(),
    }];
    nodes.extend(membership.members().map(|(name, kind, status)| {
        NodeInfo {
            name: name.to_owned(),
            kind: match kind {
                NodeKind::Normal => "normal".into(),
                NodeKind::Ping => "ping".into(),
            },
            status: status.as_str().into(),
            links: membership
                .links(name, now)
                .into_iter()
                .map(|(name, up)| LinkInfo { name, up })
                .collect(),
        }
    }));
    if let Ok(mut shared) = snapshot.lock() {
        shared.nodes = nodes;
    }
}

/// `hbcomm`'s entry point: configuration from the master's environment or flags.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut args = std::env::args().skip(1);
    let mut insecure_crc = false;
    let mut config_dir = std::env::var(names::env::CONFIG_DIR).unwrap_or_else(|_| "/etc/ha.d".into());
    let mut node = std::env::var(names::env::NODE_NAME).ok();
    let mut state_dir = std::env::var(names::env::STATE_DIR).unwrap_or_else(|_| "/var/lib/heartbeat".into());
    let mut bind = std::env::var("HB_BIND_ADDRESS").ok();
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| args.next().unwrap_or_default();
        match arg.as_str() {
            "--insecure-crc" => insecure_crc = true,
            "--config-dir" => config_dir = value(&mut args),
            "--node" => node = Some(value(&mut args)),
            "--state-dir" => state_dir = value(&mut args),
            "--bind" => bind = Some(value(&mut args)),
            "--help" | "-h" => {
                println!("usage: hbcomm [--config-dir DIR] [--node NAME] [--state-dir DIR] [--bind ADDRESS] [--insecure-crc]\nNormally started by the heartbeat master, which passes these in the environment.");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("hbcomm: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let loaded = match hbapi::config::load_dir(std::path::Path::new(&config_dir)) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("hbcomm: configuration refused:\n{error}");
            // A configuration that cannot be read will not read better on a respawn.
            return ExitCode::from(100);
        }
    };
    hbapi::logging::init(
        "hbcomm",
        hbapi::logging::level_for_debug(loaded.config.logging.debug),
    );
    let Some(node) = node else {
        tracing::error!("no node name: set {} or pass --node", names::env::NODE_NAME);
        return ExitCode::from(100);
    };
    let Some(bus_address) = hbapi::bus::find_address(std::path::Path::new(
        &std::env::var(names::env::RUN_DIR).unwrap_or_else(|_| "/run/heartbeat".into()),
    )) else {
        tracing::error!("no bus address: hbcomm is started by the heartbeat master");
        return ExitCode::from(100);
    };
    let bind = match bind.filter(|b| !b.is_empty()).map(|b| b.parse::<IpAddr>()) {
        Some(Ok(address)) => Some(address),
        Some(Err(error)) => {
            tracing::error!("--bind: {error}");
            return ExitCode::from(100);
        }
        None => None,
    };
    let options = CommOptions {
        node,
        state_dir: PathBuf::from(state_dir),
        bus_address,
        bind,
        insecure_crc,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hbcomm: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        match run(options, loaded.config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error @ CommError::Config(_)) => {
                tracing::error!("{error}");
                ExitCode::from(100)
            }
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}
