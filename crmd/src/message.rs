//! crmd's peer protocol: cluster messages of type `crmd`, one typed enum in, one out. On the
//! wire (hbcomm's message body) each is a flat map of text fields with `v` (the protocol
//! version) and `op` (the kind); lists are newline-separated group names.
//!
//! - `report`: a node's whole state, sent after its start-up probe and after every change;
//!   groups being started or stopped count as running, so that nobody starts them meanwhile.
//! - `order`: the decision maker's `start` or `stop` of a group on one node, sent to every
//!   node so that a node that becomes the decision maker before the target answers still
//!   counts the start as under way.
//! - `move`, `cleanup`: an operator's move or cleanup, kept by every node.
//! - `fenced`: the decision maker's word that a lost node was fenced.
//! - `hello`: from a crmd that starts; every node answers with its report.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::policy::{Groups, Scope};

/// The protocol version this crmd speaks (field `v`).
pub const VERSION: u32 = 1;

/// Why a message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// No `v` field, or one this crmd does not speak.
    #[error("protocol version {0:?} (this crmd speaks {VERSION})")]
    Version(Option<String>),
    /// No `op`, or an unknown one.
    #[error("unknown op {0:?}")]
    UnknownOp(Option<String>),
    /// A field the op needs is missing.
    #[error("{op}: field {field:?} missing")]
    Missing {
        /// The op.
        op: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field's value is not one the protocol allows.
    #[error("{op}: field {field:?} has the value {value:?}")]
    Invalid {
        /// The op.
        op: &'static str,
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// A node's own state, as it reports it (FreeHA's node states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalState {
    /// Working normally.
    #[default]
    Ok,
    /// Its services were stopped on request (FreeHA's SIGHUP); it runs nothing until force
    /// start or a restart.
    Stopping,
    /// Its daemon is stopping: it gives up its groups and leaves the cluster.
    Leaving,
    /// A group failed here (FreeHA style): it runs nothing until the error is cleared.
    Errored,
}

impl LocalState {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Ok => "ok",
            LocalState::Stopping => "stopping",
            LocalState::Leaving => "leaving",
            LocalState::Errored => "errored",
        }
    }

    fn parse(text: &str) -> Option<LocalState> {
        match text {
            "ok" => Some(LocalState::Ok),
            "stopping" => Some(LocalState::Stopping),
            "leaving" => Some(LocalState::Leaving),
            "errored" => Some(LocalState::Errored),
            _ => None,
        }
    }
}

/// What a node says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Groups running (or being started or stopped).
    pub running: Groups,
    /// Groups that failed there.
    pub failed: Groups,
    /// Groups whose stop failed there: they may still run.
    pub blocked: Groups,
    /// Groups it is handing over (hb_standby, until the handover is done).
    pub standby: Scope,
    /// Groups it asked for (hb_takeover).
    pub takeover: Scope,
    /// Groups it gave away by hb_standby: it takes them back only when no other node can
    /// run them (Heartbeat's one-time handover).
    pub declined: Groups,
    /// The node's own state.
    pub state: LocalState,
    /// The last operator command on the node, with its caller.
    pub command: String,
    /// Whether the node has quorum (a node without runs nothing).
    pub quorum: bool,
    /// The nodes it hears (itself included).
    pub hears: Groups,
}

/// Which way an order goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// Start the group.
    Start,
    /// Stop the group.
    Stop,
}

/// One crmd peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// A crmd that starts asks for everyone's report.
    Hello,
    /// A node's state.
    Report(Report),
    /// The decision maker orders `node` to start or stop `group`.
    Order {
        /// Start or stop.
        kind: OrderKind,
        /// Group.
        group: String,
        /// The node that carries it out.
        node: String,
    },
    /// An operator moved `group` to `node` (`None`: wherever it belongs).
    Move {
        /// Group.
        group: String,
        /// Node.
        node: Option<String>,
        /// Who asked (recorded with the decisions that carry it out).
        by: String,
    },
    /// An operator cleared `group`'s failures everywhere (`None`: every group's).
    Cleanup {
        /// Group.
        group: Option<String>,
        /// Who asked.
        by: String,
    },
    /// The decision maker fenced `node`: nothing runs there.
    Fenced {
        /// Node.
        node: String,
    },
}

fn join(set: &BTreeSet<String>) -> String {
    let mut text = String::new();
    for (index, item) in set.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(item);
    }
    text
}

fn split(text: &str) -> Groups {
    Arc::new(
        text.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn scope_name(scope: Scope) -> &'static str {
    scope.as_str()
}

impl PeerMessage {
    /// The op name.
    pub fn op(&self) -> &'static str {
        match self {
            PeerMessage::Hello => "hello",
            PeerMessage::Report(_) => "report",
            PeerMessage::Order { .. } => "order",
            PeerMessage::Move { .. } => "move",
            PeerMessage::Cleanup { .. } => "cleanup",
            PeerMessage::Fenced { .. } => "fenced",
        }
    }

    /// Whether this message only refreshes what peers know (a decision names it only when
    /// nothing else happened).
    pub fn is_routine(&self) -> bool {
        matches!(self, PeerMessage::Hello | PeerMessage::Report(_))
    }

    /// The body hbcomm carries.
    pub fn encode(&self) -> HashMap<String, String> {
        let mut body = HashMap::from([
            ("v".to_owned(), VERSION.to_string()),
            ("op".to_owned(), self.op().to_owned()),
        ]);
        let mut put = |name: &str, value: String| {
            body.insert(name.to_owned(), value);
        };
        match self {
            PeerMessage::Hello => {}
            PeerMessage::Report(report) => {
                put("running", join(&report.running));
                put("failed", join(&report.failed));
                put("blocked", join(&report.blocked));
                put("standby", scope_name(report.standby).to_owned());
                put("takeover", scope_name(report.takeover).to_owned());
                put("declined", join(&report.declined));
                put("state", report.state.as_str().to_owned());
                put("command", report.command.clone());
                put("quorum", if report.quorum { "yes" } else { "no" }.to_owned());
                put("hears", join(&report.hears));
            }
            PeerMessage::Order { kind, group, node } => {
                put(
                    "kind",
                    match kind {
                        OrderKind::Start => "start",
                        OrderKind::Stop => "stop",
                    }
                    .to_owned(),
                );
                put("group", group.clone());
                put("node", node.clone());
            }
            PeerMessage::Move { group, node, by } => {
                put("group", group.clone());
                put("node", node.clone().unwrap_or_default());
                put("by", by.clone());
            }
            PeerMessage::Cleanup { group, by } => {
                put("group", group.clone().unwrap_or_default());
                put("by", by.clone());
            }
            PeerMessage::Fenced { node } => put("node", node.clone()),
        }
        body
    }

    /// Reads a body; anything this version does not know is an error, never a guess.
    pub fn decode(body: &HashMap<String, String>) -> Result<PeerMessage, MessageError> {
        let version = body.get("v");
        if version.and_then(|v| v.parse::<u32>().ok()) != Some(VERSION) {
            return Err(MessageError::Version(version.cloned()));
        }
        let op = body.get("op").map(String::as_str);
        let field = |op: &'static str, field: &'static str| {
            body.get(field)
                .map(String::as_str)
                .ok_or(MessageError::Missing { op, field })
        };
        // Empty values may not survive the wire (Heartbeat's forms drop empty fields): a
        // list or text that is absent is empty.
        let text = |name: &str| body.get(name).map_or("", String::as_str);
        let invalid = |op: &'static str, field: &'static str, value: &str| MessageError::Invalid {
            op,
            field,
            value: value.to_owned(),
        };
        match op {
            Some("hello") => Ok(PeerMessage::Hello),
            Some("report") => {
                const OP: &str = "report";
                let scope = |name: &'static str| {
                    let value = field(OP, name)?;
                    Scope::parse(value)
                        .filter(|_| !value.is_empty())
                        .ok_or_else(|| invalid(OP, name, value))
                };
                let state = field(OP, "state")?;
                let quorum = field(OP, "quorum")?;
                Ok(PeerMessage::Report(Report {
                    running: split(text("running")),
                    failed: split(text("failed")),
                    blocked: split(text("blocked")),
                    standby: scope("standby")?,
                    takeover: scope("takeover")?,
                    declined: split(text("declined")),
                    state: LocalState::parse(state).ok_or_else(|| invalid(OP, "state", state))?,
                    command: text("command").to_owned(),
                    quorum: match quorum {
                        "yes" => true,
                        "no" => false,
                        other => return Err(invalid(OP, "quorum", other)),
                    },
                    hears: split(text("hears")),
                }))
            }
            Some("order") => {
                const OP: &str = "order";
                let kind = field(OP, "kind")?;
                Ok(PeerMessage::Order {
                    kind: match kind {
                        "start" => OrderKind::Start,
                        "stop" => OrderKind::Stop,
                        other => return Err(invalid(OP, "kind", other)),
                    },
                    group: non_empty(OP, "group", field(OP, "group")?)?,
                    node: non_empty(OP, "node", field(OP, "node")?)?,
                })
            }
            Some("move") => {
                const OP: &str = "move";
                let node = text("node");
                Ok(PeerMessage::Move {
                    group: non_empty(OP, "group", field(OP, "group")?)?,
                    node: (!node.is_empty()).then(|| node.to_owned()),
                    by: text("by").to_owned(),
                })
            }
            Some("cleanup") => {
                let group = text("group");
                Ok(PeerMessage::Cleanup {
                    group: (!group.is_empty()).then(|| group.to_owned()),
                    by: text("by").to_owned(),
                })
            }
            Some("fenced") => Ok(PeerMessage::Fenced {
                node: non_empty("fenced", "node", field("fenced", "node")?)?,
            }),
            other => Err(MessageError::UnknownOp(other.map(str::to_owned))),
        }
    }
}

fn non_empty(op: &'static str, field: &'static str, value: &str) -> Result<String, MessageError> {
    if value.is_empty() {
        Err(MessageError::Invalid {
            op,
            field,
            value: String::new(),
        })
    } else {
        Ok(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(names: &[&str]) -> Groups {
        Arc::new(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn every_kind() -> Vec<PeerMessage> {
        vec![
            PeerMessage::Hello,
            PeerMessage::Report(Report::default()),
            PeerMessage::Report(Report {
                running: groups(&["web", "db"]),
                failed: groups(&["mail"]),
                blocked: groups(&["mail"]),
                standby: Scope::Foreign,
                takeover: Scope::Local,
                declined: groups(&["db"]),
                state: LocalState::Leaving,
                command: "hb_standby foreign by uid 0".into(),
                quorum: true,
                hears: groups(&["alpha", "bravo"]),
            }),
            PeerMessage::Order {
                kind: OrderKind::Start,
                group: "web".into(),
                node: "bravo".into(),
            },
            PeerMessage::Order {
                kind: OrderKind::Stop,
                group: "IPaddr::10.0.0.1".into(),
                node: "alpha".into(),
            },
            PeerMessage::Move {
                group: "web".into(),
                node: Some("bravo".into()),
                by: "move web to bravo by uid 0".into(),
            },
            PeerMessage::Move {
                group: "web".into(),
                node: None,
                by: String::new(),
            },
            PeerMessage::Cleanup {
                group: Some("web".into()),
                by: "cleanup of web by uid 0".into(),
            },
            PeerMessage::Cleanup {
                group: None,
                by: "cleanup of every group by uid 0".into(),
            },
            PeerMessage::Fenced {
                node: "charlie".into(),
            },
        ]
    }

    #[test]
    fn every_message_survives_the_round_trip() {
        for message in every_kind() {
            let body = message.encode();
            assert_eq!(body.get("v").map(String::as_str), Some("1"));
            assert_eq!(PeerMessage::decode(&body), Ok(message));
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let mut body = every_kind()[2].encode();
        body.remove("state");
        assert_eq!(
            PeerMessage::decode(&body),
            Err(MessageError::Missing {
                op: "report",
                field: "state"
            })
        );
    }

    #[test]
    fn empty_fields_dropped_on_the_way_read_as_empty() {
        let mut body = PeerMessage::Report(Report::default()).encode();
        body.retain(|_, value| !value.is_empty());
        assert_eq!(
            PeerMessage::decode(&body),
            Ok(PeerMessage::Report(Report::default()))
        );
    }

    #[test]
    fn other_versions_and_unknown_ops_are_refused() {
        let mut body = PeerMessage::Hello.encode();
        body.insert("v".into(), "2".into());
        assert!(matches!(PeerMessage::decode(&body), Err(MessageError::Version(Some(v))) if v == "2"));
        body.remove("v");
        assert_eq!(PeerMessage::decode(&body), Err(MessageError::Version(None)));
        let mut body = PeerMessage::Hello.encode();
        body.insert("op".into(), "start".into());
        assert_eq!(
            PeerMessage::decode(&body),
            Err(MessageError::UnknownOp(Some("start".into())))
        );
    }

    #[test]
    fn bad_values_are_refused_not_guessed() {
        let mut body = every_kind()[2].encode();
        body.insert("state".into(), "sleepy".into());
        assert!(matches!(
            PeerMessage::decode(&body),
            Err(MessageError::Invalid { field: "state", .. })
        ));
        let mut body = every_kind()[2].encode();
        body.insert("standby".into(), String::new());
        assert!(matches!(
            PeerMessage::decode(&body),
            Err(MessageError::Invalid { field: "standby", .. })
        ));
        let mut body = every_kind()[3].encode();
        body.insert("group".into(), String::new());
        assert!(matches!(
            PeerMessage::decode(&body),
            Err(MessageError::Invalid { field: "group", .. })
        ));
    }
}
