//! The cluster configuration model: what `ha.cf` + `haresources` + `authkeys` (or one
//! `ha.toml`) say, validated, with Heartbeat's defaults applied.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The whole configuration of a cluster, the same on every node.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `cluster`: the cluster's name (Heartbeat's default `linux-ha`).
    pub cluster_name: String,
    /// `node`: member names, lower-cased, in declaration order.
    pub nodes: Vec<String>,
    /// `bcast`, `mcast`, `mcast6`, `ucast`, `ucast6`: the heartbeat links.
    pub media: Vec<Medium>,
    /// `udpport`: UDP port of bcast and ucast links (694).
    pub udp_port: u16,
    /// `baud`: the speed of serial links (Heartbeat's default 19200).
    pub baud: u32,
    /// keepalive, warntime, deadtime, initdead, deadping.
    pub timing: Timing,
    /// `ping`, `ping6`, `ping_group`: pseudo-nodes judged by reachability.
    pub ping_nodes: Vec<PingNode>,
    /// `auto_failback`.
    pub auto_failback: AutoFailback,
    /// `respawn`: processes the master starts and restarts.
    pub respawn: Vec<RespawnSpec>,
    /// `env NAME=value`, stored with Heartbeat's `HA_` prefix already applied.
    pub env: Vec<(String, String)>,
    /// `stonith` and `stonith_host`.
    pub stonith: Vec<StonithSpec>,
    /// `apiauth`: which users and groups may use which client service.
    pub api_auth: Vec<ApiAuth>,
    /// Logging: `logfile`, `debugfile`, `logfacility`, `use_logd`, `debug`.
    pub logging: Logging,
    /// `watchdog`: a watchdog device hbcomm keeps alive while this node may run its groups
    /// (its timeout: [`watchdog_timeout`]).
    pub watchdog: Option<String>,
    /// `realtime` and `rtprio`: how hbcomm is scheduled and kept in memory.
    pub realtime: Realtime,
    /// `max_rexmit_delay`: upper bound of the delay before a retransmission request is answered.
    pub max_rexmit_delay: Duration,
    /// `msgfmt`: the wire format this node sends.
    pub msgfmt: MsgFormat,
    /// `hopfudge`: hops above the cluster size a message may travel.
    pub hopfudge: u8,
    /// `autojoin`: whether unknown nodes may join.
    pub autojoin: AutoJoin,
    /// `hbgenmethod`: how the generation number is kept.
    pub generation_method: GenerationMethod,
    /// `engine`: what carries membership and cluster messages.
    pub engine: Engine,
    /// Whose operating semantics apply where Heartbeat and FreeHA disagree (ha.toml's
    /// `style`; ha.cf is Heartbeat's file, so it always means Heartbeat's).
    pub style: Style,
    /// FreeHA's "oops" window: how long peers wait before taking over the groups of a node
    /// whose daemon was stopped (ha.toml's `oops_timeout`; FreeHA style only).
    pub oops_timeout: Duration,
    /// How long peers hold a lost node's groups without fencing (three nodes or more, with
    /// quorum), waiting for its own stop (ha.cf's `lost_node_wait`); `None`: with a watchdog
    /// its timeout, else the longest stop timeout of what it ran, plus deadtime.
    pub lost_node_wait: Option<Duration>,
    /// Where FreeHA's service scripts live (ha.toml's `freeha_bindir`; FreeHA installs them
    /// in /opt/freeha/bin).
    pub freeha_bindir: std::path::PathBuf,
    /// Resource groups, from `haresources` or `[[group]]` tables.
    pub groups: Vec<ResourceGroup>,
    /// The authentication keys, from `authkeys` or `[auth]`.
    pub auth: AuthKeys,
}

impl ClusterConfig {
    /// Heartbeat's defaults for every directive, no resource group and no key yet: where the
    /// ha.cf parser starts (haresources and authkeys are read into it afterwards).
    pub fn heartbeat_defaults() -> Self {
        use super::hacf::defaults;
        ClusterConfig {
            cluster_name: defaults::CLUSTER_NAME.into(),
            nodes: Vec::new(),
            media: Vec::new(),
            udp_port: defaults::UDP_PORT,
            baud: defaults::BAUD,
            timing: Timing {
                keepalive: defaults::KEEPALIVE,
                deadtime: defaults::DEADTIME,
                warntime: defaults::DEADTIME / 2,
                initdead: defaults::DEADTIME,
                deadping: defaults::DEADTIME,
            },
            ping_nodes: Vec::new(),
            auto_failback: AutoFailback::Legacy,
            respawn: Vec::new(),
            env: Vec::new(),
            stonith: Vec::new(),
            api_auth: Vec::new(),
            logging: Logging::default(),
            watchdog: None,
            realtime: Realtime::default(),
            max_rexmit_delay: defaults::MAX_REXMIT_DELAY,
            msgfmt: MsgFormat::Classic,
            hopfudge: 1,
            autojoin: AutoJoin::None,
            generation_method: GenerationMethod::File,
            engine: Engine::Heartbeat,
            style: Style::Heartbeat,
            oops_timeout: defaults::OOPS_TIMEOUT,
            lost_node_wait: None,
            freeha_bindir: defaults::FREEHA_BINDIR.into(),
            groups: Vec::new(),
            auth: AuthKeys {
                active: 0,
                keys: BTreeMap::new(),
            },
        }
    }

    /// The watchdog's timeout when a device is configured.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
            .as_ref()
            .map(|_| watchdog_timeout(self.timing.deadtime))
    }
}

/// Heartbeat 3.0.6's watchdog timeout: deadtime plus 10 ms, in whole seconds rounded up (the
/// unit of `WDIOC_SETTIMEOUT`). A node that sends no heartbeat for that long is reset; its
/// peers, which declared it dead after deadtime, know when that has happened.
pub fn watchdog_timeout(deadtime: Duration) -> Duration {
    let millis = deadtime.as_millis().saturating_add(10);
    Duration::from_secs(u64::try_from(millis.div_ceil(1000)).unwrap_or(u64::MAX))
}

/// The membership timers, all on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Interval between heartbeats.
    pub keepalive: Duration,
    /// Silence after which a node is declared dead.
    pub deadtime: Duration,
    /// Silence after which a "late heartbeat" warning is logged.
    pub warntime: Duration,
    /// Deadtime that applies until a node has been heard once after start-up.
    pub initdead: Duration,
    /// Deadtime of ping pseudo-nodes.
    pub deadping: Duration,
}

/// One heartbeat link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// `bcast DEV`: UDP broadcast on the device.
    Bcast {
        /// Interface name.
        device: String,
    },
    /// `mcast DEV GROUP PORT TTL LOOP` (IPv4) or `mcast6 DEV GROUP PORT HOPS LOOP`.
    Mcast {
        /// Interface name.
        device: String,
        /// Multicast group.
        group: IpAddr,
        /// UDP port.
        port: u16,
        /// TTL (IPv4) or hop limit (IPv6).
        ttl: u8,
        /// Whether our own packets loop back.
        loopback: bool,
    },
    /// `ucast DEV PEER…` / `ucast6 DEV PEER…`: UDP unicast to each peer address.
    Ucast {
        /// Interface name.
        device: String,
        /// Peer address or host name.
        peer: String,
        /// Whether the line was `ucast6`.
        ipv6: bool,
    },
    /// `serial /dev/ttyS0`: Heartbeat's framing on a tty (a null-modem cable).
    Serial {
        /// The tty's absolute path (also the link's name, as in Heartbeat).
        device: String,
    },
}

impl Medium {
    /// The ha.cf directive that declares this medium.
    pub fn directive(&self) -> &'static str {
        match self {
            Medium::Bcast { .. } => "bcast",
            Medium::Mcast { group, .. } if group.is_ipv6() => "mcast6",
            Medium::Mcast { .. } => "mcast",
            Medium::Ucast { ipv6: true, .. } => "ucast6",
            Medium::Ucast { .. } => "ucast",
            Medium::Serial { .. } => "serial",
        }
    }

    /// Heartbeat's name for the link (what `cl_status listhblinks` prints).
    pub fn link_name(&self) -> String {
        match self {
            Medium::Bcast { device }
            | Medium::Ucast { device, .. }
            | Medium::Mcast { device, .. }
            | Medium::Serial { device } => device.clone(),
        }
    }
}

impl fmt::Display for Medium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Medium::Bcast { device } => write!(f, "bcast {device}"),
            Medium::Mcast {
                device,
                group,
                port,
                ttl,
                loopback,
            } => write!(
                f,
                "{} {device} {group} {port} {ttl} {}",
                self.directive(),
                u8::from(*loopback)
            ),
            Medium::Ucast { device, peer, .. } => write!(f, "{} {device} {peer}", self.directive()),
            Medium::Serial { device } => write!(f, "serial {device}"),
        }
    }
}

/// A ping pseudo-node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingNode {
    /// `ping ADDR` / `ping6 ADDR`: one address is one pseudo-node.
    Single {
        /// The address pinged (also the pseudo-node's name).
        address: IpAddr,
    },
    /// `ping_group NAME ADDR…`: alive while any member answers.
    Group {
        /// The pseudo-node's name.
        name: String,
        /// Member addresses.
        addresses: Vec<IpAddr>,
    },
}

impl PingNode {
    /// The name the pseudo-node is published under.
    pub fn name(&self) -> String {
        match self {
            PingNode::Single { address } => address.to_string(),
            PingNode::Group { name, .. } => name.clone(),
        }
    }
}

/// `auto_failback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoFailback {
    /// Resources go back to their preferred node when it returns.
    On,
    /// Resources stay where they are.
    Off,
    /// Heartbeat's pre-1.2 behaviour (no nice_failback); deprecated, warns.
    Legacy,
}

impl AutoFailback {
    /// The ha.cf spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoFailback::On => "on",
            AutoFailback::Off => "off",
            AutoFailback::Legacy => "legacy",
        }
    }
}

/// A word that names none of an enum's values: what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found:?}")]
pub struct UnknownWord {
    /// The accepted spellings, for the message.
    pub expected: &'static str,
    /// What was written.
    pub found: String,
}

impl std::str::FromStr for AutoFailback {
    type Err = UnknownWord;

    /// `on`/`off` in any of Heartbeat's boolean spellings (`yes`, `true`, `1`…), or `legacy`;
    /// the one parser for ha.cf, ha.toml and crmd's scenarios.
    fn from_str(text: &str) -> Result<Self, UnknownWord> {
        match super::hacf::parse_bool(text) {
            Some(true) => Ok(AutoFailback::On),
            Some(false) => Ok(AutoFailback::Off),
            None if text.eq_ignore_ascii_case("legacy") => Ok(AutoFailback::Legacy),
            None => Err(UnknownWord {
                expected: "on, off or legacy",
                found: text.to_owned(),
            }),
        }
    }
}

/// Whose semantics apply where Heartbeat and FreeHA disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// SIGTERM hands the groups over at once; SIGHUP rereads the configuration.
    #[default]
    Heartbeat,
    /// SIGTERM leaves the node STOPPING and its groups wait out the oops window; SIGHUP
    /// stops the node's services but keeps it running; a failed monitor makes the node
    /// ERRORED until SIGUSR1 (force start) or SIGUSR2 (clear error).
    FreeHa,
}

impl Style {
    /// ha.toml's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Heartbeat => "heartbeat",
            Style::FreeHa => "freeha",
        }
    }
}

/// `respawn USER /path args…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespawnSpec {
    /// The user it runs as.
    pub user: String,
    /// Program and arguments, split on white space (no shell is involved).
    pub command: Vec<String>,
}

impl RespawnSpec {
    /// The child's name in the supervisor: the program's file name.
    pub fn name(&self) -> String {
        let program = self.command.first().map(String::as_str).unwrap_or("");
        program.rsplit('/').next().unwrap_or(program).to_owned()
    }
}

/// A fencing device declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StonithSpec {
    /// `stonith TYPE CONFIGFILE`.
    ConfigFile {
        /// Plugin type, e.g. `external/ssh`.
        device_type: String,
        /// The plugin's configuration file.
        config_file: String,
    },
    /// `stonith_host FROM|* TYPE PARAMS…`.
    Host {
        /// The node that may use this device, or `*` for all.
        from: String,
        /// Plugin type.
        device_type: String,
        /// The plugin's parameters, as written.
        params: Vec<String>,
    },
}

/// `apiauth CLIENT uid=… gid=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAuth {
    /// Client service name.
    pub client: String,
    /// Allowed user names or numbers.
    pub uids: Vec<String>,
    /// Allowed group names or numbers.
    pub gids: Vec<String>,
}

/// `realtime` and `rtprio`: hbcomm, whose lateness is what makes peers declare a node dead,
/// runs SCHED_RR and locked in memory unless `realtime off` (Heartbeat's default is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Realtime {
    /// `realtime`.
    pub enabled: bool,
    /// `rtprio`: the SCHED_RR priority, 1–99; `None`: the lowest (Heartbeat's default).
    pub priority: Option<u8>,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            enabled: true,
            priority: None,
        }
    }
}

/// Logging directives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Logging {
    /// `logfile`.
    pub logfile: Option<String>,
    /// `debugfile`.
    pub debugfile: Option<String>,
    /// `logfacility` (syslog facility name, e.g. `local0`), `none` disables syslog.
    pub facility: Option<String>,
    /// `use_logd`.
    pub use_logd: bool,
    /// `debug` level, 0..=255.
    pub debug: u8,
}

/// `msgfmt`. Heartbeat's default is `classic`, yet a message with a binary field (every
/// heartbeat carries the binary `srcuuid`) goes out in the netstring form either way, which is
/// why Heartbeat 3.0.6 captures show `###` packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgFormat {
    /// `classic`: the `>>>` … `<<<` text form.
    Classic,
    /// `netstring`: the `###` … `%%%` length-prefixed form.
    Netstring,
}

/// `autojoin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoJoin {
    /// Only nodes named in the configuration.
    None,
    /// Nodes that once were members may rejoin.
    Other,
    /// Any node with the key may join.
    Any,
}

/// `hbgenmethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationMethod {
    /// A counter persisted in the state directory.
    File,
    /// Derived from the wall clock.
    Time,
}

/// What carries membership and cluster messages (ha.cf's and ha.toml's `engine`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Engine {
    /// Heartbeat's own protocol on the configured links (the default).
    #[default]
    Heartbeat,
    /// A running Corosync 3: membership from one CPG group, messages in agreed order through
    /// it, names from its nodelist. hbcomm needs the `corosync` build feature.
    Corosync {
        /// The CPG group (never one of Pacemaker's).
        group: String,
    },
}

impl Engine {
    /// The CPG group heartbeat-rs uses unless told otherwise.
    pub const DEFAULT_GROUP: &'static str = "heartbeat-rs";

    /// The CPG groups Pacemaker's daemons join (its 1.1 and 2.x names): never ours.
    pub const PACEMAKER_GROUPS: &'static [&'static str] = &[
        "pacemakerd",
        "cib",
        "crmd",
        "attrd",
        "stonith-ng",
        "pcmk",
        "pacemaker-controld",
    ];

    /// Reads `heartbeat`, `corosync` or `corosync:GROUP`.
    pub fn parse(text: &str) -> Result<Engine, String> {
        let valid_group = |group: &str| {
            // A CPG name holds at most 128 bytes.
            !group.is_empty()
                && group.len() <= 127
                && group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match text.split_once(':') {
            None if text == "heartbeat" => Ok(Engine::Heartbeat),
            None if text == "corosync" => Ok(Engine::Corosync {
                group: Engine::DEFAULT_GROUP.into(),
            }),
            Some(("corosync", group)) if Engine::PACEMAKER_GROUPS.contains(&group) => Err(format!(
                "CPG group {group:?} is Pacemaker's: heartbeat-rs beside Pacemaker needs a group of its own"
            )),
            Some(("corosync", group)) if valid_group(group) => Ok(Engine::Corosync { group: group.into() }),
            Some(("corosync", group)) => Err(format!(
                "CPG group {group:?}: expected 1-127 of A-Z a-z 0-9 - _ ."
            )),
            _ => Err(format!(
                "expected heartbeat, corosync or corosync:GROUP, found {text:?}"
            )),
        }
    }

    /// The form [`Engine::parse`] reads.
    pub fn as_text(&self) -> String {
        match self {
            Engine::Heartbeat => "heartbeat".into(),
            Engine::Corosync { group } if group == Engine::DEFAULT_GROUP => "corosync".into(),
            Engine::Corosync { group } => format!("corosync:{group}"),
        }
    }
}

/// A resource group: started left to right on one node, stopped right to left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// The group's identifier (haresources: its first resource).
    pub id: String,
    /// The node it runs on when that node is up.
    pub preferred_node: String,
    /// Members, in start order.
    pub resources: Vec<Resource>,
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Unique identifier (haresources: the whole `Name::arg::arg` token).
    pub id: String,
    /// Which kind of agent runs it.
    pub class: AgentClass,
    /// The agent's name: script name, init script or OCF type.
    pub agent: String,
    /// Positional arguments (heartbeat class: `Name::a::b`).
    pub args: Vec<String>,
    /// Named parameters (OCF class: `OCF_RESKEY_<name>`).
    pub params: BTreeMap<String, String>,
    /// Operation settings.
    pub ops: OpSettings,
}

/// Agent classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentClass {
    /// Heartbeat resource.d scripts (and init scripts called Heartbeat's way).
    Heartbeat,
    /// LSB init scripts.
    Lsb,
    /// OCF agents of a provider.
    Ocf {
        /// e.g. `heartbeat`, `pacemaker`.
        provider: String,
    },
    /// FreeHA's service scripts: `start<TYPE>`, `stop<TYPE>` and an optional `monitor<TYPE>`
    /// (`starthasrv`, `stophasrv`, `monitorhasrv`) in the cluster's `freeha_bindir`.
    FreeHa,
}

impl AgentClass {
    /// The class's name as in `ocf:heartbeat:Dummy`.
    pub fn name(&self) -> &'static str {
        match self {
            AgentClass::Heartbeat => "heartbeat",
            AgentClass::Lsb => "lsb",
            AgentClass::Ocf { .. } => "ocf",
            AgentClass::FreeHa => "freeha",
        }
    }
}

/// Timeouts, monitoring and failure handling of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSettings {
    /// Recurring monitor interval; none for Heartbeat v1 resources.
    pub monitor_interval: Option<Duration>,
    /// Timeout of each monitor.
    pub monitor_timeout: Duration,
    /// Timeout of start.
    pub start_timeout: Duration,
    /// Timeout of stop.
    pub stop_timeout: Duration,
    /// Failures in place before the group moves.
    pub migration_threshold: u32,
    /// How long a failure counts; none means until cleaned up.
    pub failure_timeout: Option<Duration>,
}

impl Default for OpSettings {
    fn default() -> Self {
        OpSettings {
            monitor_interval: None,
            monitor_timeout: Duration::from_secs(20),
            start_timeout: Duration::from_secs(20),
            stop_timeout: Duration::from_secs(20),
            migration_threshold: 1,
            failure_timeout: None,
        }
    }
}

/// `authkeys`: the key used to sign what we send, and every key accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKeys {
    /// `auth N`: the key index used for sending (and, with no downgrade, for receiving).
    pub active: u8,
    /// Keys by index.
    pub keys: BTreeMap<u8, AuthKey>,
}

impl AuthKeys {
    /// The key that signs and verifies packets.
    pub fn active_key(&self) -> Option<&AuthKey> {
        self.keys.get(&self.active)
    }
}

impl fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKeys")
            .field("active", &self.active)
            .field("keys", &self.keys)
            .finish()
    }
}

/// One key of `authkeys`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// The method.
    pub method: AuthMethod,
    /// The shared secret (empty for crc). Never printed by `Debug`.
    pub secret: String,
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("method", &self.method)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// CRC32: no key, no security.
    Crc,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256 (heartbeat-rs only; recommended without Heartbeat nodes).
    Sha256,
}

impl AuthMethod {
    /// The authkeys spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Crc => "crc",
            AuthMethod::Md5 => "md5",
            AuthMethod::Sha1 => "sha1",
            AuthMethod::Sha256 => "sha256",
        }
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = UnknownWord;

    /// The authkeys spelling (authkeys and ha.toml).
    fn from_str(text: &str) -> Result<Self, UnknownWord> {
        match text {
            "crc" => Ok(AuthMethod::Crc),
            "md5" => Ok(AuthMethod::Md5),
            "sha1" => Ok(AuthMethod::Sha1),
            "sha256" => Ok(AuthMethod::Sha256),
            _ => Err(UnknownWord {
                expected: "crc, md5, sha1 or sha256",
                found: text.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AuthMethod, AutoFailback};

    #[test]
    fn auto_failback_takes_heartbeats_boolean_spellings_and_legacy() {
        for (text, value) in [
            ("on", AutoFailback::On),
            ("Yes", AutoFailback::On),
            ("1", AutoFailback::On),
            ("off", AutoFailback::Off),
            ("false", AutoFailback::Off),
            ("LEGACY", AutoFailback::Legacy),
        ] {
            assert_eq!(text.parse::<AutoFailback>(), Ok(value), "{text}");
        }
        let error = "maybe".parse::<AutoFailback>().unwrap_err();
        assert_eq!(error.to_string(), "expected on, off or legacy, found \"maybe\"");
    }

    #[test]
    fn auth_methods_round_trip_their_authkeys_spelling() {
        for method in [
            AuthMethod::Crc,
            AuthMethod::Md5,
            AuthMethod::Sha1,
            AuthMethod::Sha256,
        ] {
            assert_eq!(method.as_str().parse::<AuthMethod>(), Ok(method));
        }
        assert!("SHA1".parse::<AuthMethod>().is_err());
    }
}
