//! Placement as a pure function: what the decision maker knows of the cluster in, the actions
//! that bring it closer to where every group should run out. No clock and no I/O, so that
//! every rule is tested with input → expected-output scenarios (tests/scenarios).
//!
//! Rules, in order of precedence:
//! 1. Safety. A group that may still run on a lost node (`unclean`: the node was neither
//!    stopped cleanly nor fenced) starts nowhere until that node is fenced — or, in a cluster
//!    of three or more without fencing, until the lost node's own stop (it lost quorum) must
//!    be over. The daemon decides which lost nodes are unclean; a two-node cluster without
//!    fencing has none (Heartbeat v1's takeover), which is why it gets a split-brain warning.
//!    A group a node held when its daemon was stopped in FreeHA style waits in the same way
//!    until that node's oops window ends.
//!    A group whose stop failed on a node may still run there: with fencing that node is
//!    fenced; without, the group is left alone (blocked) until an operator cleans it up.
//! 2. A group found on more than one node is stopped everywhere but where it should run.
//! 3. A group runs on at most one node: a move stops it first and starts it elsewhere only
//!    once no node reports it running (the next decision, after the stop is reported).
//! 4. Where: the node an operator moved it to, if that node may run it; then a node that asked
//!    to take it (hb_takeover) and may run it. Otherwise the
//!    node it runs on stays unless that node is in standby, failed the group, or
//!    auto_failback is on and the preferred node is back. Otherwise the preferred node, then
//!    the other eligible nodes in alphabetical order. Eligible: active, not in standby, and the
//!    group has not failed there.
//!
//! Quorum is judged by each node for itself (crate::daemon): a node without quorum stops its
//! groups and the decision maker of a partition without quorum decides nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hbapi::config::AutoFailback;

/// Which groups an hb_standby or hb_takeover concerns, for the node that asked: Heartbeat's
/// modes (`failback` is `foreign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// None.
    #[default]
    None,
    /// Every group.
    All,
    /// Groups whose preferred node is this node.
    Local,
    /// Groups whose preferred node is another.
    Foreign,
}

impl Scope {
    /// Parses Heartbeat's mode names ("" means all, as the commands' default).
    pub fn parse(mode: &str) -> Option<Scope> {
        match mode {
            "" | "all" => Some(Scope::All),
            "local" => Some(Scope::Local),
            "foreign" | "failback" => Some(Scope::Foreign),
            "none" => Some(Scope::None),
            _ => None,
        }
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::None => "none",
            Scope::All => "all",
            Scope::Local => "local",
            Scope::Foreign => "foreign",
        }
    }

    /// Whether `group` is in this scope for `node`.
    pub fn covers(self, group: &GroupView, node: &str) -> bool {
        match self {
            Scope::None => false,
            Scope::All => true,
            Scope::Local => group.preferred_node == node,
            Scope::Foreign => group.preferred_node != node,
        }
    }
}

/// One node as the decision maker sees it.
/// A set of group names, shared between the daemon's state and its views (a view is built
/// for every decision; a thousand groups are not copied each time).
pub type Groups = Arc<BTreeSet<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Member of this partition (hbcomm says active, and its crmd has reported).
    pub active: bool,
    /// Groups it gave up (hb_standby).
    pub standby: Scope,
    /// Groups it asked to take (hb_takeover).
    pub takeover: Scope,
    /// Groups it reports running (or starting / stopping: anything not cleanly stopped).
    pub running: Groups,
    /// Groups that failed there (it must not get them again until cleared).
    pub failed: Groups,
    /// Lost while it held groups, and neither fenced nor cleanly stopped since.
    pub unclean: bool,
    /// Groups whose stop failed on this node: they may still run there.
    pub blocked: Groups,
    /// Groups this node held when its daemon was stopped in FreeHA style: they start
    /// nowhere else until the oops window ends (the daemon drops the hold then, or when the
    /// node reports again).
    pub held: Groups,
    /// Groups this node gave away by hb_standby: it takes them only when no other node
    /// can (Heartbeat's standby is a one-time handover, not a lasting state).
    pub declined: Groups,
}

/// A group and where it prefers to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Group id.
    pub name: String,
    /// haresources' first field.
    pub preferred_node: String,
    /// Where an operator moved it (`Move`), until moved elsewhere or cleared.
    pub moved_to: Option<String>,
}

/// Everything a decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Every configured node.
    pub nodes: Vec<NodeView>,
    /// Every group, in configuration order.
    pub groups: Arc<Vec<GroupView>>,
    /// ha.cf's auto_failback.
    pub auto_failback: AutoFailback,
    /// Whether a fencing device is configured.
    pub fencing: bool,
}

/// What the decision maker orders.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Fence a lost node.
    Fence {
        /// Node.
        node: String,
    },
    /// Stop a group on a node.
    Stop {
        /// Group.
        group: String,
        /// Node.
        node: String,
    },
    /// Start a group on a node.
    Start {
        /// Group.
        group: String,
        /// Node.
        node: String,
    },
}

impl Action {
    /// The node a start or stop goes to (`None` for a fence).
    pub fn target_node(&self) -> Option<&str> {
        match self {
            Action::Fence { .. } => None,
            Action::Start { node, .. } | Action::Stop { node, .. } => Some(node),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Fence { node } => write!(f, "fence {node}"),
            Action::Stop { group, node } => write!(f, "stop {group} {node}"),
            Action::Start { group, node } => write!(f, "start {group} {node}"),
        }
    }
}

/// Where `group` should run, among the eligible nodes.
fn target<'a>(view: &'a ClusterView, group: &GroupView, current: Option<&'a str>) -> Option<&'a str> {
    let eligible = |node: &NodeView| {
        node.active && !node.standby.covers(group, &node.name) && !node.failed.contains(&group.name)
    };
    // A node that gave the group away by hb_standby is the last resort for it.
    let willing = |node: &NodeView| eligible(node) && !node.declined.contains(&group.name);
    // An operator's move comes first, when that node may run it.
    if let Some(node) = group
        .moved_to
        .as_deref()
        .and_then(|to| view.nodes.iter().find(|n| n.name == to && eligible(n)))
    {
        return Some(node.name.as_str());
    }
    // hb_takeover: the node that asked gets the group, wherever it runs now.
    if let Some(taker) = view
        .nodes
        .iter()
        .find(|n| eligible(n) && n.takeover.covers(group, &n.name))
    {
        return Some(taker.name.as_str());
    }
    let preferred = view
        .nodes
        .iter()
        .find(|n| n.name == group.preferred_node && willing(n))
        .map(|n| n.name.as_str());
    if let Some(current) = current {
        let stays = view.nodes.iter().any(|n| n.name == current && eligible(n));
        if stays {
            return match (view.auto_failback, preferred) {
                (AutoFailback::On | AutoFailback::Legacy, Some(preferred)) => Some(preferred),
                _ => Some(current),
            };
        }
    }
    if preferred.is_some() {
        return preferred;
    }
    let mut others: Vec<&NodeView> = view.nodes.iter().filter(|n| willing(n)).collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(first) = others.first() {
        return Some(first.name.as_str());
    }
    // Nobody else can: a node that declined it takes it back (its preferred node first).
    let mut last_resort: Vec<&NodeView> = view.nodes.iter().filter(|n| eligible(n)).collect();
    last_resort.sort_by_key(|n| (n.name != group.preferred_node, n.name.as_str()));
    last_resort.first().map(|n| n.name.as_str())
}

/// The actions that bring the cluster closer to where every group should run.
pub fn decide(view: &ClusterView) -> Vec<Action> {
    let mut actions = Vec::new();
    if view.fencing {
        for node in view.nodes.iter().filter(|n| n.unclean && !n.active) {
            actions.push(Action::Fence {
                node: node.name.clone(),
            });
        }
    }
    for group in view.groups.iter() {
        // A stop that failed: with fencing the node is fenced (the fence ends whatever still
        // runs there); without, the group stays where it is, untouched, for an operator.
        let stuck_on: Vec<&NodeView> = view
            .nodes
            .iter()
            .filter(|n| n.blocked.contains(&group.name))
            .collect();
        if !stuck_on.is_empty() {
            if view.fencing {
                for node in stuck_on {
                    let fence = Action::Fence {
                        node: node.name.clone(),
                    };
                    if !actions.contains(&fence) {
                        actions.insert(0, fence);
                    }
                }
            }
            continue;
        }
        // Nodes that may run it: active ones that report it, and lost unclean ones.
        let blocked = view.nodes.iter().any(|n| {
            (!n.active && n.unclean && n.running.contains(&group.name)) || n.held.contains(&group.name)
        });
        let holders: Vec<&str> = view
            .nodes
            .iter()
            .filter(|n| n.active && n.running.contains(&group.name))
            .map(|n| n.name.as_str())
            .collect();
        if blocked {
            // Whatever runs on live nodes stays as it is until the lost node is fenced (or
            // its oops window is over).
            continue;
        }
        let current = match holders.as_slice() {
            [] => None,
            [only] => Some(*only),
            several => {
                // Found on several nodes: keep it where it should run (or on the first).
                let keep = target(view, group, None)
                    .filter(|t| several.contains(t))
                    .unwrap_or(several[0]);
                for node in several.iter().filter(|n| **n != keep) {
                    actions.push(Action::Stop {
                        group: group.name.clone(),
                        node: (*node).to_owned(),
                    });
                }
                continue;
            }
        };
        let wanted = target(view, group, current);
        match (current, wanted) {
            (Some(current), Some(wanted)) if current == wanted => {}
            (Some(current), _) => actions.push(Action::Stop {
                group: group.name.clone(),
                node: current.to_owned(),
            }),
            (None, Some(wanted)) => actions.push(Action::Start {
                group: group.name.clone(),
                node: wanted.to_owned(),
            }),
            (None, None) => {}
        }
    }
    actions
}

/// A scenario's comma-separated group list.
pub fn group_list(list: &str) -> Groups {
    Arc::new(
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Parses a scenario's input (see tests/scenarios/README.md) into a view.
pub fn parse_scenario(text: &str) -> Result<(ClusterView, Vec<String>), String> {
    let mut nodes: BTreeMap<String, NodeView> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut groups = Vec::new();
    let mut auto_failback = AutoFailback::Off;
    let mut fencing = false;
    let mut expected = Vec::new();
    let mut in_expect = false;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let error = |what: &str| format!("line {}: {what}: {raw:?}", number + 1);
        if in_expect {
            expected.push(line.to_owned());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["expect"] => in_expect = true,
            ["auto_failback", value] => {
                auto_failback = value.parse().map_err(|_| error("auto_failback on|off|legacy"))?
            }
            ["fencing", value] => fencing = *value == "yes",
            ["group", name, "preferred", preferred, rest @ ..] => groups.push(GroupView {
                name: (*name).to_owned(),
                preferred_node: (*preferred).to_owned(),
                moved_to: match rest {
                    [] => None,
                    ["moved", to] => Some((*to).to_owned()),
                    _ => return Err(error("group NAME preferred NODE [moved NODE]")),
                },
            }),
            ["node", name, state, rest @ ..] => {
                let mut node = NodeView {
                    name: (*name).to_owned(),
                    active: match *state {
                        "active" => true,
                        "dead" => false,
                        _ => return Err(error("node NAME active|dead …")),
                    },
                    standby: Scope::None,
                    takeover: Scope::None,
                    running: Groups::default(),
                    failed: Groups::default(),
                    unclean: false,
                    held: Groups::default(),
                    blocked: Groups::default(),
                    declined: Groups::default(),
                };
                for item in rest {
                    match item.split_once('=') {
                        Some(("running", list)) => node.running = group_list(list),
                        Some(("failed", list)) => node.failed = group_list(list),
                        None if *item == "standby" => node.standby = Scope::All,
                        Some(("standby", mode)) => {
                            node.standby =
                                Scope::parse(mode).ok_or_else(|| error("standby=all|local|foreign"))?
                        }
                        Some(("takeover", mode)) => {
                            node.takeover =
                                Scope::parse(mode).ok_or_else(|| error("takeover=all|local|foreign"))?
                        }
                        None if *item == "unclean" => node.unclean = true,
                        Some(("blocked", list)) => node.blocked = group_list(list),
                        Some(("held", list)) => node.held = group_list(list),
                        Some(("declined", list)) => node.declined = group_list(list),
                        _ => return Err(error("node attributes: running=a,b failed=a standby unclean")),
                    }
                }
                order.push(node.name.clone());
                nodes.insert(node.name.clone(), node);
            }
            _ => return Err(error("unknown line")),
        }
    }
    let nodes = order.iter().filter_map(|n| nodes.remove(n)).collect();
    Ok((
        ClusterView {
            nodes,
            groups: Arc::new(groups),
            auto_failback,
            fencing,
        },
        expected,
    ))
}
