//! `ha.toml`: the modern, order-independent form of the same model.
//!
//! ```toml
//! [cluster]
//! nodes = ["alpha", "bravo"]
//! keepalive = "200ms"
//! deadtime = "1"
//! auto_failback = "off"
//! style = "heartbeat"        # or "freeha": FreeHA's signals, oops window and ERRORED state
//! oops_timeout = "30s"       # freeha only: how long peers wait for a stopped node
//! freeha_bindir = "/opt/freeha/bin"  # where class "freeha" finds starthasrv, stophasrv, monitorhasrv
//! lost_node_wait = "5s"      # no fencing: how long peers wait for a lost node's own stop
//! realtime = true            # hbcomm SCHED_RR and locked in memory (rtprio = 1–99 to choose)
//! baud = 19200               # speed of serial links
//!
//! [[link]]
//! type = "ucast"
//! device = "eth0"
//! peers = ["10.0.0.1", "10.0.0.2"]
//!
//! [[link]]
//! type = "serial"
//! device = "/dev/ttyS0"
//!
//! [auth]
//! file = "authkeys"          # or: active = 1, keys = [{ id = 1, method = "sha256", secret = "…" }]
//!
//! [[group]]
//! preferred_node = "alpha"
//! resources = [{ agent = "IPaddr::10.0.0.10/24/eth0" },
//!              { id = "db", class = "ocf", provider = "heartbeat", type = "Dummy", monitor_interval = "10s" }]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::authkeys::MAX_KEY_INDEX;
use super::diag::{Collector, ConfigError, Diagnostic, Location};
use super::duration::{format_time, parse_time};
use super::hacf::{
    check_node_name, defaults, parse_baud, resolve_timing, serial_format_conflict, serial_medium, TimingLines,
};
use super::haresources::{check_agent_name, parse_resource_token};
use super::model::*;

/// A time value written the ha.cf way (`"200ms"`, `"1"`, `"1.5s"`), or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub Duration);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
            Fraction(f64),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Seconds(seconds) => seconds.to_string(),
            Raw::Fraction(seconds) => seconds.to_string(),
        };
        parse_time(&text).map(Time).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_time(self.0))
    }
}

/// The file, as TOML sees it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlConfig {
    /// Cluster-wide settings.
    pub cluster: TomlCluster,
    /// Heartbeat links.
    #[serde(default, rename = "link", skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<TomlLink>,
    /// Ping pseudo-nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ping: Vec<TomlPing>,
    /// Supervised processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub respawn: Vec<TomlRespawn>,
    /// Environment for respawned processes (names get Heartbeat's `HA_` prefix).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Fencing devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stonith: Vec<TomlStonith>,
    /// Client authorisation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apiauth: Vec<TomlApiAuth>,
    /// Logging.
    #[serde(default)]
    pub logging: TomlLogging,
    /// Authentication keys.
    pub auth: TomlAuth,
    /// Resource groups.
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<TomlGroup>,
}

/// `[cluster]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlCluster {
    /// Cluster name.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// Member node names.
    pub nodes: Vec<Spanned<String>>,
    /// UDP port of bcast/ucast links.
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Speed of serial links.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Heartbeat interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Spanned<Time>>,
    /// Silence before a node is declared dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadtime: Option<Spanned<Time>>,
    /// Silence before a late-heartbeat warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warntime: Option<Spanned<Time>>,
    /// Deadtime until a node is first heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdead: Option<Spanned<Time>>,
    /// Deadtime of ping nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadping: Option<Spanned<Time>>,
    /// `on`, `off` or `legacy`; absent: `legacy` (Heartbeat's default) in Heartbeat style,
    /// `off` in FreeHA style (services that moved stay where they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_failback: Option<String>,
    /// Retransmission delay bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rexmit_delay: Option<Time>,
    /// `classic` or `netstring`.
    #[serde(default = "default_msgfmt")]
    pub msgfmt: String,
    /// Extra hops.
    #[serde(default = "default_hopfudge")]
    pub hopfudge: u8,
    /// `file` or `time`.
    #[serde(default = "default_generation_method")]
    pub generation_method: String,
    /// `heartbeat`, `corosync` or `corosync:GROUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Watchdog device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<String>,
    /// hbcomm runs SCHED_RR, locked in memory (default true, as Heartbeat).
    #[serde(default = "default_realtime")]
    pub realtime: bool,
    /// Its SCHED_RR priority, 1–99 (default: the lowest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtprio: Option<u8>,
    /// `heartbeat` or `freeha`: whose semantics apply where they disagree.
    #[serde(default = "default_style")]
    pub style: String,
    /// FreeHA's oops window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oops_timeout: Option<Time>,
    /// How long a lost node's groups wait for its own stop (no fencing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_node_wait: Option<Time>,
    /// Where FreeHA's service scripts (`starthasrv`, `stophasrv`, `monitorhasrv`) live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeha_bindir: Option<std::path::PathBuf>,
}

fn default_cluster_name() -> String {
    defaults::CLUSTER_NAME.into()
}
fn default_baud() -> u32 {
    defaults::BAUD
}
fn default_udp_port() -> u16 {
    defaults::UDP_PORT
}
fn default_style() -> String {
    "heartbeat".into()
}
fn default_msgfmt() -> String {
    "classic".into()
}
fn default_hopfudge() -> u8 {
    1
}
fn default_realtime() -> bool {
    true
}
fn default_generation_method() -> String {
    "file".into()
}

/// `[[link]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TomlLink {
    /// UDP broadcast.
    Bcast {
        /// Interface.
        device: String,
    },
    /// UDP multicast (IPv4 or IPv6 group).
    Mcast {
        /// Interface.
        device: String,
        /// Multicast group.
        group: IpAddr,
        /// Port.
        port: u16,
        /// TTL or hop limit.
        #[serde(default = "one")]
        ttl: u8,
        /// Whether our own packets come back.
        #[serde(default)]
        loopback: bool,
    },
    /// UDP unicast to each peer.
    Ucast {
        /// Interface.
        device: String,
        /// Peer addresses (IPv4 or IPv6) or host names.
        peers: Vec<String>,
    },
    /// Heartbeat's framing on a tty.
    Serial {
        /// The tty's absolute path.
        device: String,
    },
}

fn one() -> u8 {
    1
}

/// `[[ping]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlPing {
    /// Group name; without it every address is a pseudo-node of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Addresses pinged.
    pub addresses: Vec<IpAddr>,
}

/// `[[respawn]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlRespawn {
    /// User it runs as.
    pub user: String,
    /// Program (full path) and arguments.
    pub command: Vec<String>,
}

/// `[[stonith]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlStonith {
    /// Plugin type.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Node allowed to use it (`*` for all); with `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Plugin parameters; with `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Plugin configuration file; instead of `host`/`params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
}

/// `[[apiauth]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlApiAuth {
    /// Client service.
    pub client: String,
    /// Users.
    #[serde(default)]
    pub uids: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub gids: Vec<String>,
}

/// `[logging]`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlLogging {
    /// Log file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Debug log file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_file: Option<String>,
    /// Syslog facility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Debug level.
    #[serde(default)]
    pub debug: u8,
}

/// `[auth]`: either a reference to an authkeys file or the keys themselves.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlAuth {
    /// An authkeys file, relative to the configuration directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The key that signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<u8>,
    /// Keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<TomlKey>,
}

/// One key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlKey {
    /// Index (0..=15).
    pub id: u8,
    /// sha256, sha1, md5 or crc.
    pub method: String,
    /// Shared secret.
    #[serde(default)]
    pub secret: String,
}

/// `[[group]]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlGroup {
    /// Identifier; defaults to the first resource's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where it runs when that node is up. FreeHA style may leave it out: the group then
    /// prefers the alphabetically first node, as FreeHA runs services there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_node: Option<Spanned<String>>,
    /// Members, in start order.
    pub resources: Vec<TomlResource>,
}

/// One resource of a group.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlResource {
    /// Identifier; defaults to `agent` or `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// haresources shorthand: `Script::arg::arg` or an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `heartbeat`, `lsb` or `ocf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// OCF provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Agent type (script, init script or OCF type).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    /// Positional arguments (heartbeat class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Named parameters (OCF class).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Recurring monitor interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_interval: Option<Time>,
    /// Monitor timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_timeout: Option<Time>,
    /// Start timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Time>,
    /// Stop timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<Time>,
    /// Failures before the group moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_threshold: Option<u32>,
    /// How long a failure counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_timeout: Option<Time>,
}

/// Turns a byte offset into a 1-based line and column.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads ha.toml text. `load_authkeys` is called for `[auth] file = …`.
pub fn parse_toml(
    path: &Path,
    text: &str,
    load_authkeys: &dyn Fn(&str) -> super::Parsed<AuthKeys>,
) -> super::Parsed<ClusterConfig> {
    let raw: TomlConfig = toml::from_str(text).map_err(|error| {
        let location = match error.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                Location::at(path, line, column)
            }
            None => Location::file(path),
        };
        ConfigError::single(Diagnostic::new(location, None, error.message().trim().to_owned()))
    })?;
    let mut diag = Collector::default();
    let at = |offset: usize| {
        let (line, column) = line_column(text, offset);
        Location::at(path, line, column)
    };

    let mut nodes = Vec::new();
    for node in &raw.cluster.nodes {
        match check_node_name(node.get_ref()) {
            Ok(name) if nodes.contains(&name) => diag.error(
                at(node.span().start),
                Some("cluster.nodes"),
                format!("node {name} is listed twice"),
            ),
            Ok(name) => nodes.push(name),
            Err(message) => diag.error(at(node.span().start), Some("cluster.nodes"), message),
        }
    }
    if nodes.is_empty() {
        diag.error(Location::file(path), Some("cluster.nodes"), "no nodes listed");
    }
    let timing_entry =
        |value: &Option<Spanned<Time>>| value.as_ref().map(|v| (v.get_ref().0, at(v.span().start)));
    let lines = TimingLines {
        keepalive: timing_entry(&raw.cluster.keepalive),
        deadtime: timing_entry(&raw.cluster.deadtime),
        warntime: timing_entry(&raw.cluster.warntime),
        initdead: timing_entry(&raw.cluster.initdead),
        deadping: timing_entry(&raw.cluster.deadping),
    };
    if let Some((duration, location)) = &lines.keepalive {
        if duration.is_zero() {
            diag.error(
                location.clone(),
                Some("cluster.keepalive"),
                "must be greater than zero",
            );
        }
    }
    let timing = resolve_timing(path, &lines, &mut diag);

    let style = match raw.cluster.style.as_str() {
        "heartbeat" => Style::Heartbeat,
        "freeha" => Style::FreeHa,
        other => {
            diag.error(
                Location::file(path),
                Some("cluster.style"),
                format!("expected \"heartbeat\" or \"freeha\", found {other:?}"),
            );
            Style::Heartbeat
        }
    };
    let auto_failback = match raw
        .cluster
        .auto_failback
        .as_deref()
        .map(str::parse::<AutoFailback>)
    {
        None if style == Style::FreeHa => AutoFailback::Off,
        Some(Ok(value @ (AutoFailback::On | AutoFailback::Off))) => value,
        None | Some(Ok(AutoFailback::Legacy)) => {
            diag.warn(Location::file(path), Some("cluster.auto_failback"), "deprecated 'legacy' auto_failback is in effect (it is the default); please set \"on\" or \"off\"");
            AutoFailback::Legacy
        }
        Some(Err(error)) => {
            diag.error(
                Location::file(path),
                Some("cluster.auto_failback"),
                error.to_string(),
            );
            AutoFailback::Off
        }
    };
    let msgfmt = match raw.cluster.msgfmt.as_str() {
        "classic" => MsgFormat::Classic,
        "netstring" => MsgFormat::Netstring,
        other => {
            diag.error(
                Location::file(path),
                Some("cluster.msgfmt"),
                format!("expected \"classic\" or \"netstring\", found {other:?}"),
            );
            MsgFormat::Netstring
        }
    };
    if let Some(priority) = raw.cluster.rtprio.filter(|p| !(1..=99).contains(p)) {
        diag.error(
            Location::file(path),
            Some("cluster.rtprio"),
            format!("expected a SCHED_RR priority from 1 to 99, found {priority}"),
        );
    }
    let generation_method = match raw.cluster.generation_method.as_str() {
        "file" => GenerationMethod::File,
        "time" => GenerationMethod::Time,
        other => {
            diag.error(
                Location::file(path),
                Some("cluster.generation_method"),
                format!("expected \"file\" or \"time\", found {other:?}"),
            );
            GenerationMethod::File
        }
    };

    let engine = match raw.cluster.engine.as_deref().map(Engine::parse) {
        None => Engine::Heartbeat,
        Some(Ok(engine)) => engine,
        Some(Err(reason)) => {
            diag.error(Location::file(path), Some("cluster.engine"), reason);
            Engine::Heartbeat
        }
    };

    let mut media = Vec::new();
    for (index, link) in raw.links.iter().enumerate() {
        let key = format!("link[{index}]");
        match link {
            TomlLink::Bcast { device } => media.push(Medium::Bcast {
                device: device.clone(),
            }),
            TomlLink::Mcast {
                device,
                group,
                port,
                ttl,
                loopback,
            } => {
                if !group.is_multicast() {
                    diag.error(
                        Location::file(path),
                        Some(&key),
                        format!("{group} is not a multicast group"),
                    );
                } else if *port == 0 || *ttl == 0 {
                    diag.error(
                        Location::file(path),
                        Some(&key),
                        "port and ttl must be greater than zero",
                    );
                } else {
                    media.push(Medium::Mcast {
                        device: device.clone(),
                        group: *group,
                        port: *port,
                        ttl: *ttl,
                        loopback: *loopback,
                    });
                }
            }
            TomlLink::Serial { device } => match serial_medium(device) {
                Ok(medium) => media.push(medium),
                Err(message) => diag.error(Location::file(path), Some(&key), message),
            },
            TomlLink::Ucast { device, peers } => {
                if peers.is_empty() {
                    diag.error(
                        Location::file(path),
                        Some(&key),
                        "a ucast link needs at least one peer",
                    );
                }
                for peer in peers {
                    let ipv6 = peer.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6());
                    media.push(Medium::Ucast {
                        device: device.clone(),
                        peer: peer.clone(),
                        ipv6,
                    });
                }
            }
        }
    }
    if let Err(message) = parse_baud(&raw.cluster.baud.to_string()) {
        diag.error(Location::file(path), Some("cluster.baud"), message);
    }
    if let Some(conflict) = serial_format_conflict(&media, msgfmt) {
        diag.error(Location::file(path), Some("cluster.msgfmt"), conflict);
    }
    if media.is_empty() && engine == Engine::Heartbeat {
        diag.error(
            Location::file(path),
            Some("link"),
            "no heartbeat links: add a [[link]] table (bcast, mcast, ucast or serial), or engine = \"corosync\"",
        );
    }

    let mut ping_nodes = Vec::new();
    for ping in &raw.ping {
        match &ping.group {
            Some(name) => ping_nodes.push(PingNode::Group {
                name: name.clone(),
                addresses: ping.addresses.clone(),
            }),
            None => ping_nodes.extend(
                ping.addresses
                    .iter()
                    .map(|address| PingNode::Single { address: *address }),
            ),
        }
    }

    let mut respawn = Vec::new();
    for (index, spec) in raw.respawn.iter().enumerate() {
        if spec
            .command
            .first()
            .is_none_or(|program| !program.starts_with('/'))
        {
            diag.error(
                Location::file(path),
                Some(&format!("respawn[{index}].command")),
                "the first element must be the program's full path",
            );
        } else {
            respawn.push(RespawnSpec {
                user: spec.user.clone(),
                command: spec.command.clone(),
            });
        }
    }

    let mut env = Vec::new();
    for (name, value) in &raw.env {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            diag.error(
                Location::file(path),
                Some(&format!("env.{name}")),
                "names are letters, digits and _",
            );
        } else {
            env.push((format!("HA_{name}"), value.clone()));
        }
    }

    let mut stonith = Vec::new();
    for (index, device) in raw.stonith.iter().enumerate() {
        match (&device.config_file, &device.host) {
            (Some(config_file), None) if device.params.is_empty() => stonith.push(StonithSpec::ConfigFile {
                device_type: device.device_type.clone(),
                config_file: config_file.clone(),
            }),
            (None, Some(host)) => stonith.push(StonithSpec::Host {
                from: host.to_lowercase(),
                device_type: device.device_type.clone(),
                params: device.params.clone(),
            }),
            _ => diag.error(
                Location::file(path),
                Some(&format!("stonith[{index}]")),
                "give either config_file, or host with params",
            ),
        }
    }

    let api_auth = raw
        .apiauth
        .iter()
        .map(|a| ApiAuth {
            client: a.client.clone(),
            uids: a.uids.clone(),
            gids: a.gids.clone(),
        })
        .collect();

    let auth = match (&raw.auth.file, raw.auth.keys.is_empty()) {
        (Some(file), true) if raw.auth.active.is_none() => match load_authkeys(file) {
            Ok((keys, warnings)) => {
                diag.warnings.extend(warnings);
                Some(keys)
            }
            Err(error) => {
                diag.errors.extend(error.errors);
                None
            }
        },
        (None, false) => {
            let mut keys = BTreeMap::new();
            for key in &raw.auth.keys {
                let method = key.method.parse::<AuthMethod>().ok();
                match method {
                    None => diag.error(
                        Location::file(path),
                        Some(&format!("auth.keys.{}", key.id)),
                        format!(
                            "unknown method {:?}: expected sha256, sha1, md5 or crc",
                            key.method
                        ),
                    ),
                    Some(_) if key.id > MAX_KEY_INDEX => diag.error(
                        Location::file(path),
                        Some("auth.keys"),
                        format!("key id {} is above {MAX_KEY_INDEX}", key.id),
                    ),
                    Some(method) if method != AuthMethod::Crc && key.secret.is_empty() => diag.error(
                        Location::file(path),
                        Some(&format!("auth.keys.{}", key.id)),
                        "this method needs a secret",
                    ),
                    Some(method) => {
                        if keys
                            .insert(
                                key.id,
                                AuthKey {
                                    method,
                                    secret: key.secret.clone(),
                                },
                            )
                            .is_some()
                        {
                            diag.error(
                                Location::file(path),
                                Some("auth.keys"),
                                format!("key {} listed twice", key.id),
                            );
                        }
                    }
                }
            }
            let active = raw.auth.active.unwrap_or(0);
            if !keys.contains_key(&active) {
                diag.error(
                    Location::file(path),
                    Some("auth.active"),
                    format!("active key {active} is not among auth.keys"),
                );
            }
            Some(AuthKeys { active, keys })
        }
        _ => {
            diag.error(
                Location::file(path),
                Some("auth"),
                "give either file = \"authkeys\", or active = N with keys = [...]",
            );
            None
        }
    };

    let mut groups = Vec::new();
    let mut resource_ids = BTreeSet::new();
    for (index, group) in raw.groups.iter().enumerate() {
        let key = format!("group[{index}]");
        let preferred = match &group.preferred_node {
            Some(named) => {
                let preferred = named.get_ref().to_lowercase();
                if !nodes.contains(&preferred) {
                    diag.error(
                        at(named.span().start),
                        Some(&format!("{key}.preferred_node")),
                        format!("{preferred:?} is not in cluster.nodes"),
                    );
                }
                preferred
            }
            None if style == Style::FreeHa => nodes.iter().min().cloned().unwrap_or_default(),
            None => {
                diag.error(
                    Location::file(path),
                    Some(&format!("{key}.preferred_node")),
                    "missing (only style = \"freeha\" may leave it out: the alphabetically first node is then preferred)",
                );
                String::new()
            }
        };
        let mut resources = Vec::new();
        for (position, spec) in group.resources.iter().enumerate() {
            let key = format!("{key}.resources[{position}]");
            match toml_resource(spec) {
                Ok(resource) => {
                    if !resource_ids.insert(resource.id.clone()) {
                        diag.error(
                            Location::file(path),
                            Some(&key),
                            format!("resource id {:?} is used twice", resource.id),
                        );
                    }
                    resources.push(resource);
                }
                Err(message) => diag.error(Location::file(path), Some(&key), message),
            }
        }
        if group.resources.is_empty() {
            diag.error(
                Location::file(path),
                Some(&key),
                "a group needs at least one resource",
            );
        }
        if let Some(first) = resources.first() {
            groups.push(ResourceGroup {
                id: group.id.clone().unwrap_or_else(|| first.id.clone()),
                preferred_node: preferred,
                resources,
            });
        }
    }

    let logging = Logging {
        logfile: raw.logging.file.clone(),
        debugfile: raw.logging.debug_file.clone(),
        facility: raw.logging.facility.clone(),
        use_logd: false,
        debug: raw.logging.debug,
    };
    let freeha_bindir = match &raw.cluster.freeha_bindir {
        Some(dir) if !dir.is_absolute() || dir.components().any(|c| c == std::path::Component::ParentDir) => {
            diag.error(
                Location::file(path),
                Some("cluster.freeha_bindir"),
                format!("{} must be an absolute path without '..'", dir.display()),
            );
            defaults::FREEHA_BINDIR.into()
        }
        Some(dir) => dir.clone(),
        None => defaults::FREEHA_BINDIR.into(),
    };
    let config = auth.map(|auth| ClusterConfig {
        cluster_name: raw.cluster.name.clone(),
        nodes,
        media,
        udp_port: raw.cluster.udp_port,
        baud: raw.cluster.baud,
        timing,
        ping_nodes,
        auto_failback,
        respawn,
        env,
        stonith,
        api_auth,
        logging,
        watchdog: raw.cluster.watchdog.clone(),
        realtime: Realtime {
            enabled: raw.cluster.realtime,
            priority: raw.cluster.rtprio,
        },
        max_rexmit_delay: raw
            .cluster
            .max_rexmit_delay
            .map_or(defaults::MAX_REXMIT_DELAY, |t| t.0),
        msgfmt,
        hopfudge: raw.cluster.hopfudge,
        autojoin: AutoJoin::None,
        generation_method,
        engine,
        style,
        oops_timeout: raw.cluster.oops_timeout.map_or(defaults::OOPS_TIMEOUT, |t| t.0),
        lost_node_wait: raw.cluster.lost_node_wait.map(|t| t.0),
        freeha_bindir,
        groups,
        auth,
    });
    let (config, warnings) = diag.finish(config)?;
    match config {
        Some(config) => Ok((config, warnings)),
        None => Err(ConfigError::file(path, "no usable [auth] section")),
    }
}

/// FreeHA's service name: its scripts are `starthasrv`, `stophasrv` and `monitorhasrv`.
pub const FREEHA_SERVICE: &str = "hasrv";
/// How often a FreeHA service is checked (with `monitorhasrv`) unless its group says.
pub const FREEHA_MONITOR_INTERVAL: Duration = Duration::from_secs(10);

fn toml_resource(spec: &TomlResource) -> Result<Resource, String> {
    let mut resource = match (&spec.agent, &spec.agent_type) {
        (Some(agent), None) => {
            if spec.class.as_deref().is_some_and(|c| c != "heartbeat") || spec.provider.is_some() {
                return Err(
                    "'agent' is haresources shorthand (heartbeat class); use class/provider/type for others"
                        .into(),
                );
            }
            parse_resource_token(agent)?
        }
        (None, agent_type) if spec.class.as_deref() == Some("freeha") => {
            // FreeHA's service: start<TYPE>, stop<TYPE>, monitor<TYPE> in freeha_bindir.
            let agent_type = agent_type.clone().unwrap_or_else(|| FREEHA_SERVICE.into());
            check_agent_name(&agent_type)?;
            if spec.provider.is_some() || !spec.args.is_empty() || !spec.params.is_empty() {
                return Err("class freeha takes no provider, args or params (its scripts take none)".into());
            }
            Resource {
                id: agent_type.clone(),
                class: AgentClass::FreeHa,
                agent: agent_type,
                args: Vec::new(),
                params: BTreeMap::new(),
                ops: OpSettings::default(),
            }
        }
        (None, Some(agent_type)) => {
            check_agent_name(agent_type)?;
            let class = match (spec.class.as_deref().unwrap_or("ocf"), &spec.provider) {
                ("ocf", provider) => AgentClass::Ocf {
                    provider: provider.clone().unwrap_or_else(|| "heartbeat".into()),
                },
                ("lsb", None) => AgentClass::Lsb,
                ("heartbeat", None) => AgentClass::Heartbeat,
                (class @ ("lsb" | "heartbeat"), Some(_)) => {
                    return Err(format!("class {class} has no provider"))
                }
                (other, _) => {
                    return Err(format!(
                        "unknown class {other:?}: expected ocf, lsb, heartbeat or freeha"
                    ))
                }
            };
            if let AgentClass::Ocf { provider } = &class {
                check_agent_name(provider)?;
            }
            Resource {
                id: agent_type.clone(),
                class,
                agent: agent_type.clone(),
                args: spec.args.clone(),
                params: BTreeMap::new(),
                ops: OpSettings::default(),
            }
        }
        _ => return Err("give either agent = \"Script::arg\" or type = \"AgentType\"".into()),
    };
    for name in spec.params.keys() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("parameter name {name:?} must be letters, digits and _"));
        }
    }
    resource.params = spec.params.clone();
    if let Some(id) = &spec.id {
        resource.id = id.clone();
    }
    let defaults = OpSettings::default();
    resource.ops = OpSettings {
        monitor_interval: match spec.monitor_interval {
            Some(interval) => Some(interval.0),
            // FreeHA notices services stopped behind its back (stophasrv run by hand).
            None if resource.class == AgentClass::FreeHa => Some(FREEHA_MONITOR_INTERVAL),
            None => None,
        },
        monitor_timeout: spec.monitor_timeout.map_or(defaults.monitor_timeout, |t| t.0),
        start_timeout: spec.start_timeout.map_or(defaults.start_timeout, |t| t.0),
        stop_timeout: spec.stop_timeout.map_or(defaults.stop_timeout, |t| t.0),
        migration_threshold: spec.migration_threshold.unwrap_or(defaults.migration_threshold),
        failure_timeout: spec.failure_timeout.map(|t| t.0),
    };
    if resource.ops.monitor_interval.is_some_and(|i| i.is_zero()) {
        return Err("monitor_interval must be greater than zero".into());
    }
    Ok(resource)
}

/// Writes `config` as ha.toml. Keys are not written out: `[auth]` refers to `authkeys_file`,
/// so the output can be shown and shared without leaking secrets.
pub fn to_toml(config: &ClusterConfig, authkeys_file: &str) -> String {
    let time = |d: Duration| Some(Spanned::new(0..0, Time(d)));
    let raw = TomlConfig {
        cluster: TomlCluster {
            name: config.cluster_name.clone(),
            nodes: config
                .nodes
                .iter()
                .map(|n| Spanned::new(0..0, n.clone()))
                .collect(),
            udp_port: config.udp_port,
            baud: config.baud,
            keepalive: time(config.timing.keepalive),
            deadtime: time(config.timing.deadtime),
            warntime: time(config.timing.warntime),
            initdead: time(config.timing.initdead),
            deadping: time(config.timing.deadping),
            auto_failback: Some(config.auto_failback.as_str().into()),
            max_rexmit_delay: Some(Time(config.max_rexmit_delay)),
            msgfmt: match config.msgfmt {
                MsgFormat::Classic => "classic".into(),
                MsgFormat::Netstring => "netstring".into(),
            },
            hopfudge: config.hopfudge,
            generation_method: match config.generation_method {
                GenerationMethod::File => "file".into(),
                GenerationMethod::Time => "time".into(),
            },
            engine: (config.engine != Engine::Heartbeat).then(|| config.engine.as_text()),
            watchdog: config.watchdog.clone(),
            realtime: config.realtime.enabled,
            rtprio: config.realtime.priority,
            style: config.style.as_str().into(),
            oops_timeout: Some(Time(config.oops_timeout)),
            lost_node_wait: config.lost_node_wait.map(Time),
            freeha_bindir: (config.freeha_bindir.as_path() != std::path::Path::new(defaults::FREEHA_BINDIR))
                .then(|| config.freeha_bindir.clone()),
        },
        links: config
            .media
            .iter()
            .map(|medium| match medium {
                Medium::Bcast { device } => TomlLink::Bcast {
                    device: device.clone(),
                },
                Medium::Mcast {
                    device,
                    group,
                    port,
                    ttl,
                    loopback,
                } => TomlLink::Mcast {
                    device: device.clone(),
                    group: *group,
                    port: *port,
                    ttl: *ttl,
                    loopback: *loopback,
                },
                Medium::Ucast { device, peer, .. } => TomlLink::Ucast {
                    device: device.clone(),
                    peers: vec![peer.clone()],
                },
                Medium::Serial { device } => TomlLink::Serial {
                    device: device.clone(),
                },
            })
            .collect(),
        ping: config
            .ping_nodes
            .iter()
            .map(|ping| match ping {
                PingNode::Single { address } => TomlPing {
                    group: None,
                    addresses: vec![*address],
                },
                PingNode::Group { name, addresses } => TomlPing {
                    group: Some(name.clone()),
                    addresses: addresses.clone(),
                },
            })
            .collect(),
        respawn: config
            .respawn
            .iter()
            .map(|r| TomlRespawn {
                user: r.user.clone(),
                command: r.command.clone(),
            })
            .collect(),
        env: config
            .env
            .iter()
            .map(|(name, value)| (name.strip_prefix("HA_").unwrap_or(name).to_owned(), value.clone()))
            .collect(),
        stonith: config
            .stonith
            .iter()
            .map(|s| match s {
                StonithSpec::ConfigFile {
                    device_type,
                    config_file,
                } => TomlStonith {
                    device_type: device_type.clone(),
                    host: None,
                    params: Vec::new(),
                    config_file: Some(config_file.clone()),
                },
                StonithSpec::Host {
                    from,
                    device_type,
                    params,
                } => TomlStonith {
                    device_type: device_type.clone(),
                    host: Some(from.clone()),
                    params: params.clone(),
                    config_file: None,
                },
            })
            .collect(),
        apiauth: config
            .api_auth
            .iter()
            .map(|a| TomlApiAuth {
                client: a.client.clone(),
                uids: a.uids.clone(),
                gids: a.gids.clone(),
            })
            .collect(),
        logging: TomlLogging {
            file: config.logging.logfile.clone(),
            debug_file: config.logging.debugfile.clone(),
            facility: config.logging.facility.clone(),
            debug: config.logging.debug,
        },
        auth: TomlAuth {
            file: Some(authkeys_file.to_owned()),
            active: None,
            keys: Vec::new(),
        },
        groups: config
            .groups
            .iter()
            .map(|group| TomlGroup {
                id: Some(group.id.clone()),
                preferred_node: Some(Spanned::new(0..0, group.preferred_node.clone())),
                resources: group.resources.iter().map(resource_to_toml).collect(),
            })
            .collect(),
    };
    toml::to_string_pretty(&raw).unwrap_or_else(|error| format!("# could not render TOML: {error}\n"))
}

fn resource_to_toml(resource: &Resource) -> TomlResource {
    let defaults = OpSettings::default();
    let shorthand = resource.class == AgentClass::Heartbeat && resource.params.is_empty();
    let agent = shorthand.then(|| {
        let mut token = resource.agent.clone();
        for arg in &resource.args {
            token.push_str("::");
            token.push_str(arg);
        }
        token
    });
    let default_id = agent.clone().unwrap_or_else(|| resource.agent.clone());
    TomlResource {
        id: (resource.id != default_id).then(|| resource.id.clone()),
        agent,
        class: (!shorthand).then(|| resource.class.name().to_owned()),
        provider: match &resource.class {
            AgentClass::Ocf { provider } => Some(provider.clone()),
            _ => None,
        },
        agent_type: (!shorthand).then(|| resource.agent.clone()),
        args: if shorthand {
            Vec::new()
        } else {
            resource.args.clone()
        },
        params: resource.params.clone(),
        monitor_interval: resource.ops.monitor_interval.map(Time),
        monitor_timeout: (resource.ops.monitor_timeout != defaults.monitor_timeout)
            .then_some(Time(resource.ops.monitor_timeout)),
        start_timeout: (resource.ops.start_timeout != defaults.start_timeout)
            .then_some(Time(resource.ops.start_timeout)),
        stop_timeout: (resource.ops.stop_timeout != defaults.stop_timeout)
            .then_some(Time(resource.ops.stop_timeout)),
        migration_threshold: (resource.ops.migration_threshold != defaults.migration_threshold)
            .then_some(resource.ops.migration_threshold),
        failure_timeout: resource.ops.failure_timeout.map(Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cluster_extra: &str) -> super::super::Parsed<ClusterConfig> {
        let text = format!(
            "[cluster]\nnodes = [\"alpha\", \"bravo\"]\nauto_failback = \"off\"\n{cluster_extra}\n\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.1\"]\n\n[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"s3cret\" }}]\n"
        );
        parse_toml(Path::new("/etc/ha.d/ha.toml"), &text, &|_| {
            unreachable!("keys are inline")
        })
    }

    #[test]
    fn freeha_groups_may_leave_out_the_preferred_node() {
        let text = |style: &str| {
            format!(
                "[cluster]\nnodes = [\"bravo\", \"alpha\"]\nstyle = \"{style}\"\n\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.1\"]\n\n[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"s3cret\" }}]\n\n[[group]]\nresources = [{{ agent = \"svc\" }}]\n"
            )
        };
        let read = |text: String| {
            parse_toml(Path::new("/etc/ha.d/ha.toml"), &text, &|_| {
                unreachable!("keys are inline")
            })
        };
        let (config, _) = read(text("freeha")).unwrap();
        assert_eq!(config.groups[0].preferred_node, "alpha");
        let error = read(text("heartbeat")).unwrap_err().to_string();
        assert!(error.contains("group[0].preferred_node: missing"), "{error}");
    }

    #[test]
    fn engine_corosync_is_read_and_written_and_needs_no_link() {
        let text = |engine: &str| {
            format!(
                "[cluster]\nnodes = [\"alpha\", \"bravo\"]\nauto_failback = \"off\"\nengine = \"{engine}\"\n\n[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"s3cret\" }}]\n"
            )
        };
        let read = |text: String| {
            parse_toml(Path::new("/etc/ha.d/ha.toml"), &text, &|_| {
                unreachable!("keys are inline")
            })
        };
        let (config, _) = read(text("corosync:web")).unwrap();
        assert_eq!(config.engine, Engine::Corosync { group: "web".into() });
        let written = to_toml(&config, "authkeys");
        assert!(written.contains("engine = \"corosync:web\""), "{written}");
        let error = read(text("heartbeat")).unwrap_err().to_string();
        assert!(error.contains("no heartbeat links"), "{error}");
        let error = read(text("totem")).unwrap_err().to_string();
        assert!(error.contains("cluster.engine"), "{error}");
    }

    #[test]
    fn freeha_style_services_are_its_scripts_and_stay_where_they_moved() {
        let read = |cluster_extra: &str, resource: &str| {
            let text = format!(
                "[cluster]\nnodes = [\"bravo\", \"alpha\"]\nstyle = \"freeha\"\n{cluster_extra}\n\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.1\"]\n\n[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"s3cret\" }}]\n\n[[group]]\nresources = [{resource}]\n"
            );
            parse_toml(Path::new("/etc/ha.d/ha.toml"), &text, &|_| {
                unreachable!("keys are inline")
            })
        };
        let (config, warnings) = read("", "{ class = \"freeha\" }").unwrap();
        // RUNNING: services that moved "safely remain on that other node".
        assert_eq!(config.auto_failback, AutoFailback::Off);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.freeha_bindir, Path::new("/opt/freeha/bin"));
        let service = &config.groups[0].resources[0];
        assert_eq!(
            (service.class.clone(), service.agent.as_str()),
            (AgentClass::FreeHa, "hasrv")
        );
        assert_eq!(service.ops.monitor_interval, Some(FREEHA_MONITOR_INTERVAL));
        let (config, _) = read(
            "freeha_bindir = \"/srv/ha\"\nauto_failback = \"on\"",
            "{ class = \"freeha\", type = \"db\", monitor_interval = \"2s\" }",
        )
        .unwrap();
        assert_eq!(config.auto_failback, AutoFailback::On);
        let written = to_toml(&config, "authkeys");
        assert!(written.contains("freeha_bindir = \"/srv/ha\""), "{written}");
        assert!(written.contains("class = \"freeha\""), "{written}");
        let keys = config.auth.clone();
        let again = parse_toml(Path::new("/etc/ha.d/ha.toml"), &written, &|_| {
            Ok((keys.clone(), Vec::new()))
        })
        .unwrap()
        .0;
        assert_eq!(again.groups, config.groups);
        assert_eq!(again.freeha_bindir, config.freeha_bindir);
        let error = read("freeha_bindir = \"opt/../x\"", "{ class = \"freeha\" }")
            .unwrap_err()
            .to_string();
        assert!(error.contains("cluster.freeha_bindir"), "{error}");
        let error = read("", "{ class = \"freeha\", params = { a = \"1\" } }")
            .unwrap_err()
            .to_string();
        assert!(error.contains("class freeha takes no"), "{error}");
    }

    #[test]
    fn style_and_oops_timeout_are_read_and_written_back() {
        let (config, _) = parse("").unwrap();
        assert_eq!(config.style, Style::Heartbeat);
        assert_eq!(config.oops_timeout, defaults::OOPS_TIMEOUT);
        let (config, _) = parse("style = \"freeha\"\noops_timeout = \"5s\"").unwrap();
        assert_eq!(config.style, Style::FreeHa);
        assert_eq!(config.oops_timeout, Duration::from_secs(5));
        let written = to_toml(&config, "authkeys");
        assert!(written.contains("style = \"freeha\""), "{written}");
    }

    #[test]
    fn an_unknown_style_is_refused_with_file_and_key() {
        let error = parse("style = \"pacemaker\"").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/etc/ha.d/ha.toml"), "{text}");
        assert!(text.contains("cluster.style"), "{text}");
        assert!(text.contains("\"pacemaker\""), "{text}");
    }
}
