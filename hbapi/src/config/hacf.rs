//! `ha.cf`, read as Heartbeat 3.0.6 reads it.
//!
//! Each line is `directive value…`; `#` starts a comment anywhere. Most directives take a list
//! of values separated by white space or commas, each applied on its own (`node a b` declares
//! two nodes); media with several fields, `respawn`, `stonith`, `stonith_host`, `apiauth` and
//! `ping_group` take the rest of the line.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::diag::{Collector, ConfigError, Diagnostic, Location};
use super::duration::{format_time, parse_time};
use super::model::*;

/// Everything `ha.cf` says, validated, with Heartbeat's defaults applied: a [`ClusterConfig`]
/// whose resource groups and keys are still empty ([`ClusterConfig::heartbeat_defaults`]) —
/// haresources and authkeys fill them in. One struct, so that a new directive is one field.
pub type HaCf = ClusterConfig;

/// Heartbeat's defaults and limits.
pub mod defaults {
    use std::time::Duration;

    /// `keepalive` default.
    pub const KEEPALIVE: Duration = Duration::from_secs(1);
    /// `deadtime` default.
    pub const DEADTIME: Duration = Duration::from_secs(30);
    /// `udpport` default (IANA's "ha-cluster").
    pub const UDP_PORT: u16 = 694;
    /// `baud` default.
    pub const BAUD: u32 = 19_200;
    /// The serial speeds Heartbeat accepts.
    pub const BAUD_RATES: [u32; 12] = [
        300, 600, 1200, 1800, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400,
    ];
    /// `max_rexmit_delay` default.
    pub const MAX_REXMIT_DELAY: Duration = Duration::from_millis(250);
    /// `cluster` default.
    pub const CLUSTER_NAME: &str = "linux-ha";
    /// Heartbeat's MAXMEDIA.
    pub const MAX_MEDIA: usize = 64;
    /// Heartbeat's MAXNODE.
    pub const MAX_NODES: usize = 100;
    /// Heartbeat's HOSTLENG, less the terminating NUL.
    pub const MAX_NODE_NAME: usize = 200;
    /// FreeHA's oops window, when ha.toml does not set `oops_timeout`.
    pub const OOPS_TIMEOUT: Duration = Duration::from_secs(30);
    /// Where FreeHA installs its service scripts.
    pub const FREEHA_BINDIR: &str = "/opt/freeha/bin";
}

/// Directives Heartbeat 3.0.6 accepts that heartbeat-rs reads but does not act on, with why.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("hbaping", "Fibre Channel HBA pings are not supported"),
    (
        "compression",
        "messages are small enough that heartbeat-rs never compresses them",
    ),
    ("compression_threshold", "heartbeat-rs never compresses messages"),
    (
        "traditional_compression",
        "heartbeat-rs never compresses messages",
    ),
    (
        "conn_logd_time",
        "there is no logd; logs go to journald or stderr",
    ),
    (
        "log_badpack",
        "bad packets are always counted and reported on the bus",
    ),
    (
        "use_apphbd",
        "there is no apphbd; the master supervises every process itself",
    ),
    ("record_config_changes", "there is no CIB (crm mode is not used)"),
    (
        "record_pengine_inputs",
        "there is no policy engine (crm mode is not used)",
    ),
    ("enable_config_writes", "there is no CIB (crm mode is not used)"),
    ("memreserve", "memory is not preallocated"),
    (
        "quorum_server",
        "there is no quorum server; quorum comes from membership, fencing and ping nodes",
    ),
    ("normalpoll", "the event loop is always the system's"),
    ("coredumps", "core dumps follow the system's settings"),
    ("coreroot", "core dumps follow the system's settings"),
    ("uuidfrom", "nodes are identified by name"),
    ("failfast", "not part of this implementation"),
    ("syslogmsgfmt", "log format is fixed"),
];

const WHOLE_LINE: &[&str] = &[
    "mcast",
    "mcast6",
    "ucast",
    "ucast6",
    "ping_group",
    "respawn",
    "stonith",
    "stonith_host",
    "apiauth",
];

const KNOWN: &[&str] = &[
    "node",
    "cluster",
    "keepalive",
    "deadtime",
    "deadping",
    "warntime",
    "initdead",
    "udpport",
    "bcast",
    "serial",
    "baud",
    "udp",
    "ping",
    "ping6",
    "auto_failback",
    "nice_failback",
    "env",
    "logfile",
    "debugfile",
    "logfacility",
    "use_logd",
    "debug",
    "watchdog",
    "realtime",
    "rtprio",
    "max_rexmit_delay",
    "msgfmt",
    "hopfudge",
    "autojoin",
    "hbgenmethod",
    "lost_node_wait",
    "crm",
    "pacemaker",
    // heartbeat-rs's own: what carries membership and messages (Heartbeat 3.0.6 rejects it).
    "engine",
];

const SYSLOG_FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7", "none",
];

/// A value on a line, with its 1-based column.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    column: usize,
}

/// Splits `text` (starting at 0-based byte `offset` of its line) on any of `delims`.
fn tokens<'a>(text: &'a str, offset: usize, delims: &[char]) -> Vec<Token<'a>> {
    let mut out = Vec::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        if delims.contains(&c) {
            if let Some(begin) = start.take() {
                out.push(Token {
                    text: &text[begin..index],
                    column: offset + begin + 1,
                });
            }
        } else if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(begin) = start {
        out.push(Token {
            text: &text[begin..],
            column: offset + begin + 1,
        });
    }
    out
}

const WHITESPACE: &[char] = &[' ', '\t', '\x0c', '\x0b'];
const DELIMS: &[char] = &[' ', '\t', '\x0c', '\x0b', ','];

/// Heartbeat's `cl_str_to_boolean`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// A `serial` line's device: a tty named by its full path.
pub(super) fn serial_medium(device: &str) -> Result<Medium, String> {
    if device.starts_with('/') {
        Ok(Medium::Serial {
            device: device.to_owned(),
        })
    } else {
        Err(format!(
            "{device:?} is not a full path to a tty (e.g. /dev/ttyS0)"
        ))
    }
}

/// A `baud` value: one of the speeds Heartbeat accepts.
pub(super) fn parse_baud(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(baud) if defaults::BAUD_RATES.contains(&baud) => Ok(baud),
        _ => Err(format!(
            "expected a serial speed ({}), found {text:?}",
            defaults::BAUD_RATES.map(|b| b.to_string()).join(", ")
        )),
    }
}

/// Why `media` and `msgfmt` cannot go together, if they cannot.
pub(super) fn serial_format_conflict(media: &[Medium], msgfmt: MsgFormat) -> Option<&'static str> {
    let serial = media.iter().any(|m| matches!(m, Medium::Serial { .. }));
    (serial && msgfmt == MsgFormat::Netstring).then_some(
        "serial links carry Heartbeat's classic text frames: msgfmt netstring cannot be used with a serial link",
    )
}

/// A node name as Heartbeat stores it: lower-cased, bounded, no white space or `/`.
pub fn check_node_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("expected a node name".into());
    }
    if name.len() > defaults::MAX_NODE_NAME {
        return Err(format!(
            "node name is {} bytes long; the limit is {}",
            name.len(),
            defaults::MAX_NODE_NAME
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/' || *c == ',')
    {
        return Err(format!("node name {name:?} contains {bad:?}"));
    }
    Ok(name.to_lowercase())
}

/// Where each timing directive was set, so that rule violations point at the right line.
#[derive(Default)]
pub(crate) struct TimingLines {
    pub(crate) keepalive: Option<(Duration, Location)>,
    pub(crate) deadtime: Option<(Duration, Location)>,
    pub(crate) warntime: Option<(Duration, Location)>,
    pub(crate) initdead: Option<(Duration, Location)>,
    pub(crate) deadping: Option<(Duration, Location)>,
}

struct Parser<'p> {
    path: &'p Path,
    diag: Collector,
    timing: TimingLines,
    config: HaCf,
    seen_single: Vec<(String, usize)>,
    /// The line of a `respawn … ipfail` (it refuses auto_failback legacy).
    ipfail_line: Option<usize>,
}

/// Reads ha.cf text. `path` names the file in every diagnostic.
pub fn parse_ha_cf(path: &Path, text: &str) -> Result<(HaCf, Vec<Diagnostic>), ConfigError> {
    let (config, diag) = parse_ha_cf_lenient(path, text);
    diag.finish(config)
}

/// Reads ha.cf text, returning what could be read beside every problem, so that the other
/// files can still be checked against it (a haresources node name against the node list).
pub(crate) fn parse_ha_cf_lenient(path: &Path, text: &str) -> (HaCf, Collector) {
    let mut parser = Parser {
        path,
        diag: Collector::default(),
        timing: TimingLines::default(),
        ipfail_line: None,
        config: ClusterConfig::heartbeat_defaults(),
        seen_single: Vec::new(),
    };
    let mut auto_failback_line = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let without_comment = raw.split('#').next().unwrap_or("");
        let without_comment = without_comment.trim_end_matches(['\r', '\n']);
        let start = without_comment.len() - without_comment.trim_start_matches(WHITESPACE).len();
        let body = &without_comment[start..];
        if body.trim().is_empty() {
            continue;
        }
        let directive_end = body.find(WHITESPACE).unwrap_or(body.len());
        let directive = &body[..directive_end];
        let rest_offset = start + directive_end;
        let rest = &without_comment[rest_offset..];
        if directive == "auto_failback" || directive == "nice_failback" {
            auto_failback_line = Some(line_no);
        }
        parser.directive(line_no, start + 1, directive, rest, rest_offset);
    }
    parser.finish(auto_failback_line)
}

impl Parser<'_> {
    fn at(&self, line: usize, column: usize) -> Location {
        Location::at(self.path, line, column)
    }

    fn error(&mut self, line: usize, column: usize, directive: &str, message: impl Into<String>) {
        let location = self.at(line, column);
        self.diag.error(location, Some(directive), message);
    }

    fn warn(&mut self, line: usize, column: usize, directive: &str, message: impl Into<String>) {
        let location = self.at(line, column);
        self.diag.warn(location, Some(directive), message);
    }

    /// A directive that holds one value: the last one counts, as in Heartbeat, with a warning.
    fn note_single(&mut self, line: usize, column: usize, directive: &str) {
        if let Some((_, first)) = self
            .seen_single
            .iter()
            .find(|(name, _)| name == directive)
            .cloned()
        {
            self.warn(
                line,
                column,
                directive,
                format!("also set on line {first}; this later value is the one used"),
            );
        } else {
            self.seen_single.push((directive.to_owned(), line));
        }
    }

    fn directive(&mut self, line: usize, column: usize, directive: &str, rest: &str, offset: usize) {
        let mut directive = directive;
        if directive == "udp" {
            self.warn(
                line,
                column,
                "udp",
                "directive 'udp' is an old name; it is read as 'bcast'",
            );
            directive = "bcast";
        }
        if let Some((_, why)) = NOT_IMPLEMENTED.iter().find(|(name, _)| *name == directive) {
            self.warn(
                line,
                column,
                directive,
                format!("accepted for compatibility but not implemented by heartbeat-rs: {why}"),
            );
            return;
        }
        if WHOLE_LINE.contains(&directive) {
            let fields = tokens(rest, offset, WHITESPACE);
            if fields.is_empty() {
                self.error(line, column, directive, "expects values after the directive");
                return;
            }
            self.whole_line(line, column, directive, &fields);
            return;
        }
        if !KNOWN.contains(&directive) {
            self.error(
                line,
                column,
                directive,
                "unknown directive (Heartbeat 3.0.6 has no such directive either; check the spelling)",
            );
            return;
        }
        let values = tokens(rest, offset, DELIMS);
        if values.is_empty() {
            self.error(line, column, directive, "expects a value after the directive");
            return;
        }
        for value in values {
            self.option(line, column, directive, value);
        }
    }

    fn time(&mut self, line: usize, value: Token<'_>, directive: &str) -> Option<Duration> {
        match parse_time(value.text) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(line, value.column, directive, message);
                None
            }
        }
    }

    fn option(&mut self, line: usize, directive_column: usize, directive: &str, value: Token<'_>) {
        let column = value.column;
        let text = value.text;
        match directive {
            "node" => match check_node_name(text) {
                Ok(name) if self.config.nodes.contains(&name) => {
                    self.error(line, column, directive, format!("node {name} is declared twice"))
                }
                Ok(_) if self.config.nodes.len() >= defaults::MAX_NODES => self.error(
                    line,
                    column,
                    directive,
                    format!("more than {} nodes", defaults::MAX_NODES),
                ),
                Ok(name) => self.config.nodes.push(name),
                Err(message) => self.error(line, column, directive, message),
            },
            "cluster" => {
                self.note_single(line, directive_column, directive);
                self.config.cluster_name = text.to_owned();
            }
            "keepalive" | "deadtime" | "deadping" | "warntime" | "initdead" => {
                self.note_single(line, directive_column, directive);
                let Some(duration) = self.time(line, value, directive) else {
                    return;
                };
                let zero_allowed = matches!(directive, "deadtime" | "deadping" | "initdead");
                if duration.is_zero() && !zero_allowed {
                    self.error(line, column, directive, "must be greater than zero");
                    return;
                }
                let slot = match directive {
                    "keepalive" => &mut self.timing.keepalive,
                    "deadtime" => &mut self.timing.deadtime,
                    "deadping" => &mut self.timing.deadping,
                    "warntime" => &mut self.timing.warntime,
                    _ => &mut self.timing.initdead,
                };
                *slot = Some((duration, Location::line(self.path, line)));
            }
            "udpport" => {
                self.note_single(line, directive_column, directive);
                match text.parse::<u16>() {
                    Ok(port) if port > 0 => self.config.udp_port = port,
                    _ => self.error(
                        line,
                        column,
                        directive,
                        format!("expected a UDP port number from 1 to 65535, found {text:?}"),
                    ),
                }
            }
            "baud" => {
                self.note_single(line, directive_column, directive);
                match parse_baud(text) {
                    Ok(baud) => self.config.baud = baud,
                    Err(message) => self.error(line, column, directive, message),
                }
            }
            "serial" => match serial_medium(text) {
                Ok(medium) => self.push_medium(line, column, directive, medium),
                Err(message) => self.error(line, column, directive, message),
            },
            "bcast" => self.push_medium(
                line,
                column,
                directive,
                Medium::Bcast {
                    device: text.to_owned(),
                },
            ),
            "ping" | "ping6" => match text.parse::<IpAddr>() {
                Ok(address) if (directive == "ping6") == address.is_ipv6() => {
                    self.config.ping_nodes.push(PingNode::Single { address })
                }
                Ok(_) => self.error(
                    line,
                    column,
                    directive,
                    format!(
                        "{text} is not an IPv{} address (use {})",
                        if directive == "ping" { 4 } else { 6 },
                        if directive == "ping" { "ping6" } else { "ping" }
                    ),
                ),
                Err(_) => self.error(
                    line,
                    column,
                    directive,
                    format!("expected an IP address, found {text:?}"),
                ),
            },
            "auto_failback" => {
                self.note_single(line, directive_column, directive);
                self.config.auto_failback = match text.parse::<AutoFailback>() {
                    Ok(value) => value,
                    Err(error) => {
                        self.error(line, column, directive, error.to_string());
                        return;
                    }
                };
            }
            "nice_failback" => match parse_bool(text) {
                Some(true) => {
                    self.warn(
                        line,
                        directive_column,
                        directive,
                        "nice_failback is obsolete; 'nice_failback on' is read as 'auto_failback off'",
                    );
                    self.config.auto_failback = AutoFailback::Off;
                }
                Some(false) => {
                    self.warn(line, directive_column, directive, "nice_failback is obsolete; 'nice_failback off' is read as 'auto_failback legacy' (consider 'auto_failback on')");
                    self.config.auto_failback = AutoFailback::Legacy;
                }
                None => self.error(
                    line,
                    column,
                    directive,
                    format!("expected on or off, found {text:?}"),
                ),
            },
            "env" => match text.split_once('=') {
                Some((name, env_value))
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    self.config.env.push((format!("HA_{name}"), env_value.to_owned()))
                }
                _ => self.error(
                    line,
                    column,
                    directive,
                    format!("expected NAME=value with a name of letters, digits and _, found {text:?}"),
                ),
            },
            "logfile" | "debugfile" => {
                self.note_single(line, directive_column, directive);
                let slot = if directive == "logfile" {
                    &mut self.config.logging.logfile
                } else {
                    &mut self.config.logging.debugfile
                };
                *slot = Some(text.to_owned());
            }
            "logfacility" => {
                self.note_single(line, directive_column, directive);
                if SYSLOG_FACILITIES.contains(&text) {
                    self.config.logging.facility = Some(text.to_owned());
                } else {
                    self.error(
                        line,
                        column,
                        directive,
                        format!(
                            "{text:?} is not a syslog facility (expected one of {})",
                            SYSLOG_FACILITIES.join(", ")
                        ),
                    );
                }
            }
            "use_logd" => match parse_bool(text) {
                Some(use_logd) => {
                    if use_logd {
                        self.warn(line, directive_column, directive, "there is no logd in heartbeat-rs; logs go to journald when it runs, else to stderr and the configured files");
                    }
                    self.config.logging.use_logd = use_logd;
                }
                None => self.error(
                    line,
                    column,
                    directive,
                    format!("expected on or off, found {text:?}"),
                ),
            },
            "debug" => match text.parse::<u8>() {
                Ok(level) => self.config.logging.debug = level,
                Err(_) => self.error(
                    line,
                    column,
                    directive,
                    format!("expected a debug level from 0 to 255, found {text:?}"),
                ),
            },
            "watchdog" => {
                if self.config.watchdog.is_some() {
                    self.error(line, column, directive, "watchdog device given more than once");
                } else {
                    self.config.watchdog = Some(text.to_owned());
                }
            }
            "realtime" => {
                self.note_single(line, directive_column, directive);
                match parse_bool(text) {
                    Some(enabled) => self.config.realtime.enabled = enabled,
                    None => self.error(
                        line,
                        column,
                        directive,
                        format!("expected on or off, found {text:?}"),
                    ),
                }
            }
            "rtprio" => {
                self.note_single(line, directive_column, directive);
                match text.parse::<u8>() {
                    Ok(priority) if (1..=99).contains(&priority) => {
                        self.config.realtime.priority = Some(priority)
                    }
                    _ => self.error(
                        line,
                        column,
                        directive,
                        format!("expected a SCHED_RR priority from 1 to 99, found {text:?}"),
                    ),
                }
            }
            "lost_node_wait" => {
                self.note_single(line, directive_column, directive);
                if let Some(wait) = self.time(line, value, directive) {
                    self.config.lost_node_wait = Some(wait);
                }
            }
            "max_rexmit_delay" => match text.parse::<u32>() {
                Ok(millis) if millis > 0 => {
                    self.config.max_rexmit_delay = Duration::from_millis(u64::from(millis))
                }
                _ => self.error(
                    line,
                    column,
                    directive,
                    format!("expected a positive number of milliseconds, found {text:?}"),
                ),
            },
            "msgfmt" => match text {
                "classic" => self.config.msgfmt = MsgFormat::Classic,
                "netstring" => self.config.msgfmt = MsgFormat::Netstring,
                _ => self.error(
                    line,
                    column,
                    directive,
                    format!("expected classic or netstring, found {text:?}"),
                ),
            },
            "hopfudge" => match text.parse::<u8>() {
                Ok(hops) => self.config.hopfudge = hops,
                Err(_) => self.error(
                    line,
                    column,
                    directive,
                    format!("expected a number from 0 to 255, found {text:?}"),
                ),
            },
            "autojoin" => match text.to_ascii_lowercase().as_str() {
                "none" => self.config.autojoin = AutoJoin::None,
                "other" | "any" => {
                    self.warn(line, directive_column, directive, format!("autojoin {text} is not implemented: only nodes named by 'node' lines are members"));
                    self.config.autojoin = if text.eq_ignore_ascii_case("any") {
                        AutoJoin::Any
                    } else {
                        AutoJoin::Other
                    };
                }
                _ => self.error(
                    line,
                    column,
                    directive,
                    format!("expected none, other or any, found {text:?}"),
                ),
            },
            "engine" => {
                self.note_single(line, directive_column, directive);
                match Engine::parse(text) {
                    Ok(engine) => self.config.engine = engine,
                    Err(reason) => self.error(line, column, directive, reason),
                }
            }
            "hbgenmethod" => match text {
                "file" => self.config.generation_method = GenerationMethod::File,
                "time" => self.config.generation_method = GenerationMethod::Time,
                _ => self.error(
                    line,
                    column,
                    directive,
                    format!("expected file or time, found {text:?}"),
                ),
            },
            "crm" | "pacemaker" => {
                let enabled = match parse_bool(text) {
                    Some(enabled) => enabled,
                    None if ["respawn", "manual", "valgrind"]
                        .contains(&text.to_ascii_lowercase().as_str()) =>
                    {
                        true
                    }
                    None => {
                        self.error(
                            line,
                            column,
                            directive,
                            format!("expected on, off, respawn, manual or valgrind, found {text:?}"),
                        );
                        return;
                    }
                };
                if enabled {
                    self.warn(line, directive_column, directive, "Pacemaker's CRM is not used: heartbeat-rs manages resources from haresources or ha.toml with its own crmd");
                }
            }
            _ => self.error(line, column, directive, "unknown directive"),
        }
    }

    fn push_medium(&mut self, line: usize, column: usize, directive: &str, medium: Medium) {
        if self.config.media.len() >= defaults::MAX_MEDIA {
            self.error(
                line,
                column,
                directive,
                format!("too many media (more than {})", defaults::MAX_MEDIA),
            );
        } else if self.config.media.contains(&medium) {
            self.warn(
                line,
                column,
                directive,
                format!("'{medium}' is declared twice; the second is ignored"),
            );
        } else {
            self.config.media.push(medium);
        }
    }

    fn whole_line(&mut self, line: usize, column: usize, directive: &str, fields: &[Token<'_>]) {
        match directive {
            "mcast" | "mcast6" => self.mcast(line, column, directive, fields),
            "ucast" | "ucast6" => {
                let ipv6 = directive == "ucast6";
                if fields.len() < 2 {
                    self.error(
                        line,
                        column,
                        directive,
                        format!("expected '{directive} DEVICE PEER-ADDRESS…'"),
                    );
                    return;
                }
                for peer in &fields[1..] {
                    match peer.text.parse::<IpAddr>() {
                        Ok(address) if address.is_ipv6() != ipv6 => {
                            self.error(
                                line,
                                peer.column,
                                directive,
                                format!(
                                    "{} is an IPv{} address; use {}",
                                    peer.text,
                                    if ipv6 { 4 } else { 6 },
                                    if ipv6 { "ucast" } else { "ucast6" }
                                ),
                            );
                            continue;
                        }
                        Ok(_) => {}
                        Err(_) if is_host_name(peer.text) => {}
                        Err(_) => {
                            self.error(
                                line,
                                peer.column,
                                directive,
                                format!("expected an IP address or host name, found {:?}", peer.text),
                            );
                            continue;
                        }
                    }
                    self.push_medium(
                        line,
                        column,
                        directive,
                        Medium::Ucast {
                            device: fields[0].text.to_owned(),
                            peer: peer.text.to_owned(),
                            ipv6,
                        },
                    );
                }
            }
            "ping_group" => {
                if fields.len() < 2 {
                    self.error(line, column, directive, "expected 'ping_group NAME ADDRESS…'");
                    return;
                }
                let mut addresses = Vec::new();
                for field in &fields[1..] {
                    match field.text.parse::<IpAddr>() {
                        Ok(address) => addresses.push(address),
                        Err(_) => self.error(
                            line,
                            field.column,
                            directive,
                            format!("expected an IP address, found {:?}", field.text),
                        ),
                    }
                }
                self.config.ping_nodes.push(PingNode::Group {
                    name: fields[0].text.to_owned(),
                    addresses,
                });
            }
            "respawn" => {
                if fields.len() < 2 {
                    self.error(
                        line,
                        column,
                        directive,
                        "expected 'respawn USER /full/path/to/program [ARGS…]'",
                    );
                    return;
                }
                if !fields[1].text.starts_with('/') {
                    self.error(
                        line,
                        fields[1].column,
                        directive,
                        format!("command {:?} is not a full path name", fields[1].text),
                    );
                    return;
                }
                if Path::new(fields[1].text)
                    .file_name()
                    .is_some_and(|name| name == "ipfail")
                {
                    self.ipfail_line = Some(line);
                }
                self.config.respawn.push(RespawnSpec {
                    user: fields[0].text.to_owned(),
                    command: fields[1..].iter().map(|t| t.text.to_owned()).collect(),
                });
            }
            "stonith" => {
                if fields.len() != 2 {
                    self.error(line, column, directive, "expected 'stonith TYPE CONFIGFILE'");
                    return;
                }
                self.config.stonith.push(StonithSpec::ConfigFile {
                    device_type: fields[0].text.to_owned(),
                    config_file: fields[1].text.to_owned(),
                });
            }
            "stonith_host" => {
                if fields.len() < 2 {
                    self.error(
                        line,
                        column,
                        directive,
                        "expected 'stonith_host FROM-NODE|* TYPE [PARAMS…]'",
                    );
                    return;
                }
                self.config.stonith.push(StonithSpec::Host {
                    from: fields[0].text.to_lowercase(),
                    device_type: fields[1].text.to_owned(),
                    params: fields[2..].iter().map(|t| t.text.to_owned()).collect(),
                });
            }
            "apiauth" => {
                let client = fields[0].text;
                let mut auth = ApiAuth {
                    client: client.to_owned(),
                    uids: Vec::new(),
                    gids: Vec::new(),
                };
                let mut ok = fields.len() > 1;
                for field in &fields[1..] {
                    let (list, target) = if let Some(list) = field.text.strip_prefix("uid=") {
                        (list, &mut auth.uids)
                    } else if let Some(list) = field.text.strip_prefix("gid=") {
                        (list, &mut auth.gids)
                    } else {
                        self.error(
                            line,
                            field.column,
                            directive,
                            format!("expected uid=LIST or gid=LIST, found {:?}", field.text),
                        );
                        ok = false;
                        continue;
                    };
                    if !target.is_empty() {
                        self.error(line, field.column, directive, "uid or gid list given twice");
                        ok = false;
                    }
                    target.extend(list.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
                }
                if !ok {
                    if fields.len() == 1 {
                        self.error(
                            line,
                            column,
                            directive,
                            "expected 'apiauth CLIENT [uid=LIST] [gid=LIST]' with at least one list",
                        );
                    }
                    return;
                }
                if self.config.api_auth.iter().any(|a| a.client == client) {
                    self.error(
                        line,
                        column,
                        directive,
                        format!("apiauth for client {client} given twice"),
                    );
                    return;
                }
                self.config.api_auth.push(auth);
            }
            _ => self.error(line, column, directive, "unknown directive"),
        }
    }

    fn mcast(&mut self, line: usize, column: usize, directive: &str, fields: &[Token<'_>]) {
        let ipv6 = directive == "mcast6";
        let usage = if ipv6 {
            "expected 'mcast6 DEVICE GROUP PORT HOPS LOOP', e.g. mcast6 eth0 ff02::694 694 1 0"
        } else {
            "expected 'mcast DEVICE GROUP PORT TTL LOOP', e.g. mcast eth0 225.0.0.1 694 1 0"
        };
        if fields.len() != 5 {
            self.error(line, column, directive, usage);
            return;
        }
        let group = match fields[1].text.parse::<IpAddr>() {
            Ok(group) if group.is_multicast() && group.is_ipv6() == ipv6 => group,
            _ => {
                self.error(
                    line,
                    fields[1].column,
                    directive,
                    format!(
                        "{:?} is not an IPv{} multicast group ({usage})",
                        fields[1].text,
                        if ipv6 { 6 } else { 4 }
                    ),
                );
                return;
            }
        };
        let port = match fields[2].text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                self.error(
                    line,
                    fields[2].column,
                    directive,
                    format!("expected a port from 1 to 65535, found {:?}", fields[2].text),
                );
                return;
            }
        };
        let ttl = match fields[3].text.parse::<u8>() {
            Ok(ttl) if ttl >= 1 => ttl,
            _ => {
                self.error(
                    line,
                    fields[3].column,
                    directive,
                    format!(
                        "expected a {} from 1 to 255, found {:?}",
                        if ipv6 { "hop limit" } else { "TTL" },
                        fields[3].text
                    ),
                );
                return;
            }
        };
        let loopback = match fields[4].text {
            "0" => false,
            "1" => true,
            other => {
                self.error(
                    line,
                    fields[4].column,
                    directive,
                    format!("expected loop 0 or 1, found {other:?}"),
                );
                return;
            }
        };
        self.push_medium(
            line,
            column,
            directive,
            Medium::Mcast {
                device: fields[0].text.to_owned(),
                group,
                port,
                ttl,
                loopback,
            },
        );
    }

    fn finish(mut self, auto_failback_line: Option<usize>) -> (HaCf, Collector) {
        let file = Location::file(self.path);
        if self.config.media.is_empty() && self.config.engine == Engine::Heartbeat {
            self.diag.error(
                file.clone(),
                None,
                "no heartbeat media defined: add a bcast, mcast, mcast6, ucast, ucast6 or serial line (or `engine corosync`)",
            );
        }
        if !self.config.media.is_empty() && self.config.engine != Engine::Heartbeat {
            self.diag.warn(
                file.clone(),
                Some("engine"),
                "the heartbeat media lines are not used: Corosync carries membership and messages",
            );
        }
        if let Some(conflict) = serial_format_conflict(&self.config.media, self.config.msgfmt) {
            self.diag.error(file.clone(), Some("msgfmt"), conflict);
        }
        if self.config.nodes.is_empty() && self.config.autojoin != AutoJoin::Any {
            self.diag.error(
                file.clone(),
                Some("node"),
                "no nodes defined: add a 'node NAME' line for each member (names as `uname -n` prints them)",
            );
        }
        if self.config.auto_failback == AutoFailback::Legacy {
            let location = match auto_failback_line {
                Some(line) => Location::line(self.path, line),
                None => file.clone(),
            };
            self.diag.warn(location, Some("auto_failback"), "deprecated 'legacy' auto_failback is in effect (it is the default); please convert to 'auto_failback on' or 'off'");
            if let Some(line) = self.ipfail_line {
                self.diag.error(
                    Location::line(self.path, line),
                    Some("respawn"),
                    "ipfail does not work with auto_failback legacy (nor does Heartbeat's): set auto_failback on or off",
                );
            }
        }
        let timing = resolve_timing(self.path, &self.timing, &mut self.diag);
        self.config.timing = timing;
        (self.config, self.diag)
    }
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Heartbeat's timing rules (from its `init_config`).
pub(crate) fn resolve_timing(path: &Path, lines: &TimingLines, diag: &mut Collector) -> Timing {
    let at = |entry: &Option<(Duration, Location)>| match entry {
        Some((_, location)) => location.clone(),
        None => Location::file(path),
    };
    let value = |entry: &Option<(Duration, Location)>| entry.as_ref().map(|(d, _)| *d);
    let keepalive = value(&lines.keepalive).unwrap_or(defaults::KEEPALIVE);
    let deadtime = value(&lines.deadtime).unwrap_or(defaults::DEADTIME);
    if deadtime <= 2 * keepalive {
        diag.error(
            at(if lines.deadtime.is_some() {
                &lines.deadtime
            } else {
                &lines.keepalive
            }),
            Some("deadtime"),
            format!(
                "deadtime ({}) must be more than twice keepalive ({})",
                format_time(deadtime),
                format_time(keepalive)
            ),
        );
    }
    let warntime = value(&lines.warntime).unwrap_or(deadtime / 2);
    if let Some(warn) = value(&lines.warntime) {
        if warn >= deadtime {
            diag.warn(at(&lines.warntime), Some("warntime"), format!("warntime ({}) is not less than deadtime ({}): no late-heartbeat warning will come before a node is declared dead", format_time(warn), format_time(deadtime)));
        }
    }
    let initdead = match value(&lines.initdead) {
        Some(initdead) => initdead,
        None if deadtime > Duration::from_secs(10) => deadtime,
        None if deadtime < Duration::from_secs(6) => Duration::from_secs(12),
        None => 2 * deadtime,
    };
    if initdead < deadtime {
        diag.error(
            at(&lines.initdead),
            Some("initdead"),
            format!(
                "initdead ({}) must not be smaller than deadtime ({})",
                format_time(initdead),
                format_time(deadtime)
            ),
        );
    } else if initdead < Duration::from_secs(10) {
        diag.warn(
            at(&lines.initdead),
            Some("initdead"),
            format!("initdead ({}) may be too small: it should cover a slow network start-up (Heartbeat recommends at least 10 s)", format_time(initdead)),
        );
    }
    let deadping = match value(&lines.deadping) {
        Some(deadping) => {
            if deadping <= 2 * keepalive {
                diag.error(
                    at(&lines.deadping),
                    Some("deadping"),
                    format!(
                        "deadping ({}) must be more than twice keepalive ({})",
                        format_time(deadping),
                        format_time(keepalive)
                    ),
                );
            }
            deadping
        }
        None => deadtime,
    };
    Timing {
        keepalive,
        deadtime,
        warntime,
        initdead,
        deadping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(HaCf, Vec<Diagnostic>), ConfigError> {
        parse_ha_cf(Path::new("/etc/ha.d/ha.cf"), text)
    }

    fn first_error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => error.errors[0].to_string(),
        }
    }

    const MINIMAL: &str = "node alpha bravo\nbcast eth0\nauto_failback off\n";

    #[test]
    fn ipfail_with_auto_failback_legacy_is_refused_at_its_respawn_line() {
        let text =
            "node alpha bravo\nbcast eth0\nping 10.0.0.254\nrespawn hacluster /usr/lib/heartbeat/ipfail\n";
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains("ha.cf:4"), "{error}");
        assert!(
            error.contains("ipfail does not work with auto_failback legacy"),
            "{error}"
        );
        assert!(parse(&format!("{text}auto_failback on\n")).is_ok());
    }

    #[test]
    fn reference_capture_configuration() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/heartbeat-3.0.6/ha.cf.sample"
        ))
        .unwrap();
        let (config, warnings) = parse(&text).unwrap();
        assert_eq!(config.nodes, ["alpha", "bravo"]);
        assert_eq!(config.timing.keepalive, Duration::from_millis(200));
        assert_eq!(config.timing.deadtime, Duration::from_secs(1));
        assert_eq!(config.timing.initdead, Duration::from_secs(2));
        assert_eq!(config.timing.warntime, Duration::from_millis(500));
        assert_eq!(config.media.len(), 2);
        assert_eq!(config.auto_failback, AutoFailback::Off);
        assert_eq!(config.udp_port, 694);
        // initdead 2 s is below Heartbeat's recommended 10 s.
        assert!(warnings
            .iter()
            .any(|w| w.directive.as_deref() == Some("initdead")));
    }

    #[test]
    fn option_lists_split_on_white_space_and_commas() {
        let (config, _) = parse("node Alpha,bravo  charlie\nbcast eth0 eth1\nauto_failback on\n").unwrap();
        assert_eq!(config.nodes, ["alpha", "bravo", "charlie"]);
        assert_eq!(config.media.len(), 2);
    }

    #[test]
    fn heartbeat_defaults() {
        let (config, _) = parse(MINIMAL).unwrap();
        assert_eq!(config.timing.keepalive, Duration::from_secs(1));
        assert_eq!(config.timing.deadtime, Duration::from_secs(30));
        assert_eq!(config.timing.warntime, Duration::from_secs(15));
        assert_eq!(config.timing.initdead, Duration::from_secs(30));
        assert_eq!(config.timing.deadping, Duration::from_secs(30));
        assert_eq!(config.max_rexmit_delay, Duration::from_millis(250));
        assert_eq!(config.cluster_name, "linux-ha");
    }

    #[test]
    fn initdead_default_depends_on_deadtime() {
        for (deadtime, initdead) in [("5", 12), ("8", 16), ("20", 20)] {
            let text = format!("{MINIMAL}deadtime {deadtime}\n");
            let (config, _) = parse(&text).unwrap();
            assert_eq!(
                config.timing.initdead,
                Duration::from_secs(initdead),
                "deadtime {deadtime}"
            );
        }
    }

    #[test]
    fn deadtime_must_exceed_twice_keepalive() {
        let error = first_error(&format!("{MINIMAL}keepalive 500ms\ndeadtime 1\n"));
        assert!(
            error.starts_with(
                "/etc/ha.d/ha.cf:5: deadtime: deadtime (1) must be more than twice keepalive (500ms)"
            ),
            "{error}"
        );
    }

    #[test]
    fn initdead_below_deadtime_is_refused() {
        let error = first_error(&format!("{MINIMAL}deadtime 10\ninitdead 5\n"));
        assert_eq!(
            error,
            "/etc/ha.d/ha.cf:5: initdead: initdead (5) must not be smaller than deadtime (10)"
        );
    }

    #[test]
    fn bad_time_names_line_column_and_directive() {
        let error = first_error(&format!("{MINIMAL}keepalive  2min\n"));
        assert_eq!(error, "/etc/ha.d/ha.cf:4:12: keepalive: unknown time unit \"min\" (expected none for seconds, ms or us)");
    }

    #[test]
    fn unknown_directive_is_an_error() {
        let error = first_error(&format!("{MINIMAL}keepalives 2\n"));
        assert!(
            error.starts_with("/etc/ha.d/ha.cf:4:1: keepalives: unknown directive"),
            "{error}"
        );
    }

    #[test]
    fn unimplemented_directive_warns_once() {
        let (_, warnings) = parse(&format!("{MINIMAL}compression bz2\ncompression_threshold 2\n")).unwrap();
        let compression: Vec<_> = warnings
            .iter()
            .filter(|w| w.directive.as_deref() == Some("compression"))
            .collect();
        assert_eq!(compression.len(), 1);
        assert!(compression[0].message.contains("not implemented"));
    }

    #[test]
    fn serial_lines_and_baud() {
        let (config, warnings) =
            parse("node a b\nserial /dev/ttyS0 /dev/ttyUSB1\nbaud 115200\nauto_failback on\n").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config.media,
            [
                Medium::Serial {
                    device: "/dev/ttyS0".into()
                },
                Medium::Serial {
                    device: "/dev/ttyUSB1".into()
                }
            ]
        );
        assert_eq!(config.baud, 115_200);
        assert_eq!(config.media[0].link_name(), "/dev/ttyS0");
        for (text, expected) in [
            (
                "serial ttyS0\n",
                "2:8: serial: \"ttyS0\" is not a full path to a tty",
            ),
            (
                "serial /dev/ttyS0\nbaud 12345\n",
                "3:6: baud: expected a serial speed (300, 600,",
            ),
            (
                "serial /dev/ttyS0\nmsgfmt netstring\n",
                "msgfmt: serial links carry Heartbeat's classic text frames",
            ),
        ] {
            let error = first_error(&format!("node a b\n{text}auto_failback on\n"));
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn media_lines() {
        let (config, _) = parse(
            "node a b\nmcast eth0 225.0.0.1 694 1 0\nmcast6 eth1 ff02::1:694 694 2 1\nucast eth0 10.0.0.1 10.0.0.2\nucast6 eth2 fe80::1\nauto_failback on\n",
        )
        .unwrap();
        assert_eq!(config.media.len(), 5);
        assert_eq!(config.media[1].directive(), "mcast6");
        assert_eq!(
            config.media[2],
            Medium::Ucast {
                device: "eth0".into(),
                peer: "10.0.0.1".into(),
                ipv6: false
            }
        );
    }

    #[test]
    fn broken_media_lines() {
        for (line, expected) in [
            ("mcast eth0 10.0.0.1 694 1 0", "is not an IPv4 multicast group"),
            (
                "mcast eth0 225.0.0.1 694 1",
                "expected 'mcast DEVICE GROUP PORT TTL LOOP'",
            ),
            ("mcast eth0 225.0.0.1 694 1 2", "expected loop 0 or 1"),
            ("ucast eth0", "expected 'ucast DEVICE PEER-ADDRESS…'"),
            ("ucast eth0 fe80::1", "use ucast6"),
            ("ucast eth0 bad_host!", "expected an IP address or host name"),
            ("ping 10.0.0", "expected an IP address"),
            ("respawn hacluster ipfail", "is not a full path name"),
            ("apiauth ipfail", "at least one list"),
            ("udpport 70000", "expected a UDP port number"),
            ("env 1=2=3 NOEQUALS", "expected NAME=value"),
            ("logfacility local9", "is not a syslog facility"),
            ("auto_failback maybe", "expected on, off or legacy"),
        ] {
            let error = first_error(&format!("{MINIMAL}{line}\n"));
            assert!(error.contains(expected), "{line}: {error}");
            assert!(error.starts_with("/etc/ha.d/ha.cf:4:"), "{line}: {error}");
        }
    }

    #[test]
    fn engine_corosync_needs_no_media_and_ignores_them_with_a_warning() {
        let (config, warnings) = parse("node alpha bravo\nauto_failback off\nengine corosync\n").unwrap();
        assert_eq!(
            config.engine,
            Engine::Corosync {
                group: "heartbeat-rs".into()
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let (config, warnings) = parse(&format!("{MINIMAL}engine corosync:ha-web\n")).unwrap();
        assert_eq!(
            config.engine,
            Engine::Corosync {
                group: "ha-web".into()
            }
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("media lines are not used")),
            "{warnings:?}"
        );
        for (line, expected) in [
            ("engine openais", "expected heartbeat, corosync or corosync:GROUP"),
            ("engine corosync:a/b", "CPG group \"a/b\""),
            ("engine corosync:crmd", "Pacemaker's"),
        ] {
            let error = parse(&format!("{MINIMAL}{line}\n")).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("ha.cf:4:"),
                "{line}: {error}"
            );
        }
        let error = parse("node alpha bravo\nengine heartbeat\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no heartbeat media defined"), "{error}");
    }

    #[test]
    fn missing_media_and_nodes() {
        let error = parse("auto_failback on\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("no heartbeat media defined"), "{text}");
        assert!(text.contains("no nodes defined"), "{text}");
    }

    #[test]
    fn comments_anywhere_and_env_prefix() {
        let (config, _) = parse(&format!("{MINIMAL}env FOO=bar # trailing\n   # indented comment\nrespawn hacluster /usr/lib/heartbeat/ipfail -v\n")).unwrap();
        assert_eq!(config.env, [("HA_FOO".to_string(), "bar".to_string())]);
        assert_eq!(config.respawn[0].command, ["/usr/lib/heartbeat/ipfail", "-v"]);
        assert_eq!(config.respawn[0].name(), "ipfail");
    }

    #[test]
    fn legacy_auto_failback_warns() {
        let (config, warnings) = parse("node a b\nbcast eth0\n").unwrap();
        assert_eq!(config.auto_failback, AutoFailback::Legacy);
        assert!(warnings.iter().any(|w| w.message.contains("legacy")));
    }
}
