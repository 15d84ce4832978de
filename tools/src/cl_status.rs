//! `cl_status`: Heartbeat's status command, with its sub-commands, output and exit codes
//! (heartbeat 3.0.6's cl_status.c), answered from the bus. `--json` anywhere prints the
//! same facts as JSON.

use hbapi::comm::{NodeKind, NodeStatus};
use std::process::ExitCode;

use hbapi::comm::{CommProxy, NodeInfo};
use hbapi::crmd::CrmdProxy;
use hbapi::names;

use crate::{json_nodes as nodes_json, json_string, json_strings, outln};

/// Heartbeat's exit codes.
pub mod exit {
    /// Success, or the node or link asked about is up.
    pub const OK: u8 = 0;
    /// A "normal" failure: heartbeat stopped, a node or link down, a parameter unset.
    pub const NORMAL_FAIL: u8 = 1;
    /// Bad sub-command, option or parameter.
    pub const PARAMETER_ERROR: u8 = 11;
    /// The answer did not come in time.
    pub const TIMEOUT: u8 = 12;
    /// Anything else.
    pub const UNKNOWN_ERROR: u8 = 13;
}

const HELP: &str = "Usage: cl_status <sub-command> [<options>] [<parameters>]

Sub-commands:
clientstatus <node-name> <client-id> [<timeout>]
\tShow the status of heartbeat clients.
hblinkstatus <node-name> <link-name>
\tShow the status of a heartbeat link
hbstatus
\tIndicate if heartbeat is running on the local system.
\tOptions:
\t\t-v\tverbose: also add \"listnodes -v\" output
listnodes [<option>]
\tList the nodes in the cluster.
\tOptions:
\t\t-p\tlist only 'ping' type nodes
\t\t-n\tlist only 'normal' type nodes
\t\t-v\tverbose: also list type and status,
\t\t\tthen add \"listhblinks -v\" output
listhblinks <node-name>
\tList the network interfaces used as hearbeat links.
\tOptions:
\t\t-v\tverbose: list link status as well
nodestatus <node-name>
\tList the node status.
nodetype <node-name>
\tList the nodes of a given type.
rscstatus
\tShow the status of cluster resources.
hbparameter -p <parameter-name>   (also: parameter)
\tRetrieve the value of a cluster parameter.
hbtiming [<node-name>]
\tThe heartbeat timers, and how late each node's heartbeats have been
\tsince start, with FAQ 12's suggested deadtime (heartbeat-rs).
\tOptions:
\t\t-v\tverbose: also per link
counters
\thbcomm's packet counters: sent, received, dropped by reason (heartbeat-rs).

Every sub-command also takes -m (human-readable sentences) and --json.
";

/// A parsed command line: the sub-command, its flags and its positional parameters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The sub-command.
    pub command: String,
    /// Single-letter flags seen (`m`, `v`, `p`, `n`).
    pub flags: Vec<char>,
    /// `-p NAME` of hbparameter.
    pub parameter: Option<String>,
    /// Positional parameters.
    pub params: Vec<String>,
    /// `--json`.
    pub json: bool,
}

/// Which flags each sub-command takes (Heartbeat's option strings).
pub fn flags_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "hbstatus" | "listhblinks" => "mv",
        "listnodes" => "mpnv",
        "nodestatus" | "nodetype" | "hblinkstatus" | "clientstatus" | "rscstatus" => "m",
        "hbparameter" | "parameter" => "mp:",
        "hbtiming" => "mv",
        "counters" => "m",
        _ => return None,
    })
}

/// Parses `args` (without the program name); an error is the message for stderr.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err(String::new());
    };
    let allowed = flags_of(command).ok_or_else(|| format!("{command}: invalid sub-command."))?;
    let mut invocation = Invocation {
        command: command.clone(),
        ..Invocation::default()
    };
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        if word == "--json" {
            invocation.json = true;
        } else if let Some(letters) = word.strip_prefix('-').filter(|l| !l.is_empty()) {
            for letter in letters.chars() {
                if !allowed.contains(letter) {
                    return Err(format!("{command}: unknown option -{letter}"));
                }
                if letter == 'p' && allowed.contains("p:") {
                    let name = words
                        .next()
                        .ok_or_else(|| format!("{command}: -p needs a parameter name"))?;
                    invocation.parameter = Some(name.clone());
                } else {
                    invocation.flags.push(letter);
                }
            }
        } else {
            invocation.params.push(word.clone());
        }
    }
    Ok(invocation)
}

/// What a sub-command printed and how it ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub code: u8,
}

impl Answer {
    fn ok(stdout: String) -> Self {
        Answer {
            stdout,
            stderr: String::new(),
            code: exit::OK,
        }
    }

    fn fail(code: u8, stderr: impl Into<String>) -> Self {
        Answer {
            stdout: String::new(),
            stderr: stderr.into(),
            code,
        }
    }
}

/// What a running node tells cl_status.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This node.
    pub local: String,
    /// Every node and ping node, in configuration order.
    pub nodes: Vec<NodeInfo>,
    /// Groups running here, with whether each prefers this node.
    pub held: Vec<(String, bool)>,
    /// Whether crmd says this node's resources are in transition.
    pub in_transition: bool,
    /// Groups the decision maker holds back (a lost node's own stop, FreeHA's oops window).
    pub holds: Vec<hbapi::crmd::HoldInfo>,
    /// The configuration's parameters, by Heartbeat's names.
    pub parameters: Vec<(String, String)>,
    /// Processes the master runs here (clients), with whether each is running.
    pub clients: Vec<(String, bool)>,
    /// hbcomm's timers and the peers' heartbeat gaps.
    pub timing: hbapi::comm::HeartbeatTiming,
    /// hbcomm's counters, sorted by name.
    pub counters: Vec<(String, u64)>,
}

fn node<'a>(facts: &'a Facts, name: &str) -> Option<&'a NodeInfo> {
    facts.nodes.iter().find(|n| n.name == name.to_lowercase())
}

fn unknown_node() -> Answer {
    Answer::fail(
        exit::PARAMETER_ERROR,
        "Error. May be due to incorrect node name\n",
    )
}

fn links_text(node: &NodeInfo, verbose: bool) -> String {
    node.links
        .iter()
        .map(|link| {
            if verbose {
                format!("\t{}\t{}\n", link.name, if link.up { "up" } else { "dead" })
            } else {
                format!("\t{}\n", link.name)
            }
        })
        .collect()
}

fn list_nodes(facts: &Facts, only: Option<&str>, verbose: bool, human: bool) -> String {
    let mut text = String::new();
    if human {
        text.push_str("The nodes are as follow:\n");
    }
    for node in facts
        .nodes
        .iter()
        .filter(|n| only.is_none_or(|kind| n.kind == kind))
    {
        if verbose {
            text.push_str(&format!(
                "\n{}\t{}\t(nodetype: {})\n",
                node.name, node.status, node.kind
            ));
            text.push_str(&links_text(node, true));
        } else {
            text.push_str(&format!("{}\n", node.name));
        }
    }
    text
}

/// Heartbeat's rscstatus: which resources this node holds.
pub fn resource_status(held: &[(String, bool)]) -> &'static str {
    let local = held.iter().any(|(_, preferred_here)| *preferred_here);
    let foreign = held.iter().any(|(_, preferred_here)| !*preferred_here);
    match (local, foreign) {
        (false, false) => "none",
        (true, false) => "local",
        (false, true) => "foreign",
        (true, true) => "all",
    }
}

/// Answers a sub-command from `facts` (`None`: the suite is not running here).
pub fn answer(invocation: &Invocation, facts: Option<&Facts>) -> Answer {
    let human = invocation.flags.contains(&'m');
    let verbose = invocation.flags.contains(&'v');
    let json = invocation.json;
    let Some(facts) = facts else {
        if invocation.command == "hbstatus" {
            let stdout = if json {
                "{\"running\":false}\n".to_owned()
            } else {
                "Heartbeat is stopped on this machine.\n".to_owned()
            };
            return Answer {
                stdout,
                stderr: String::new(),
                code: exit::NORMAL_FAIL,
            };
        }
        return Answer::fail(
            exit::NORMAL_FAIL,
            "cl_status: ERROR: Cannot signon with heartbeat\ncl_status: ERROR: REASON: Heartbeat is stopped on this machine.\n",
        );
    };
    let param = |index: usize| invocation.params.get(index).map(String::as_str);
    let not_enough = || Answer::fail(exit::PARAMETER_ERROR, "Not enough parameters.\n");
    match invocation.command.as_str() {
        "hbstatus" => {
            if json {
                let nodes: Vec<&NodeInfo> = facts.nodes.iter().collect();
                return Answer::ok(format!(
                    "{{\"running\":true,\"version\":{},\"nodes\":{}}}\n",
                    json_string(hbapi::VERSION),
                    nodes_json(&nodes)
                ));
            }
            if !verbose {
                return Answer::ok("Heartbeat is running on this machine.\n".into());
            }
            let mut text = if human {
                format!(
                    "Heartbeat version {}\nResources controlled by \"haresources\"\n",
                    hbapi::VERSION
                )
            } else {
                format!("version:\t{}\nmanaged by:\t\"haresources\"\n", hbapi::VERSION)
            };
            text.push_str(&list_nodes(facts, None, true, false));
            Answer::ok(text)
        }
        "listnodes" => {
            let normal = invocation.flags.contains(&'n');
            let ping = invocation.flags.contains(&'p');
            // Both, like neither, means every node (Heartbeat's rule).
            let only = match (normal, ping) {
                (true, false) => Some(NodeKind::Normal.as_str()),
                (false, true) => Some(NodeKind::Ping.as_str()),
                _ => None,
            };
            if json {
                let nodes: Vec<&NodeInfo> = facts
                    .nodes
                    .iter()
                    .filter(|n| only.is_none_or(|kind| n.kind == kind))
                    .collect();
                return Answer::ok(format!("{}\n", nodes_json(&nodes)));
            }
            Answer::ok(list_nodes(facts, only, verbose, human))
        }
        "nodestatus" | "nodetype" => {
            let Some(name) = param(0) else { return not_enough() };
            let Some(node) = node(facts, name) else {
                return unknown_node();
            };
            let is_status = invocation.command == "nodestatus";
            let value = if is_status { &node.status } else { &node.kind };
            let stdout = if json {
                format!(
                    "{{\"node\":{},\"{}\":{}}}\n",
                    json_string(&node.name),
                    if is_status { "status" } else { "type" },
                    json_string(value)
                )
            } else if human && is_status {
                format!("The cluster node {name} is {value}\n")
            } else if human {
                format!("The node {name}'s type: {value}\n")
            } else {
                format!("{value}\n")
            };
            // Heartbeat's cl_status counts an answering ping node as alive too.
            let status = node.node_status();
            let alive = status.is_alive() || status == NodeStatus::Ping;
            Answer {
                stdout,
                stderr: String::new(),
                code: if !is_status || alive {
                    exit::OK
                } else {
                    exit::NORMAL_FAIL
                },
            }
        }
        "listhblinks" => {
            let Some(name) = param(0) else { return not_enough() };
            let Some(node) = node(facts, name) else {
                return unknown_node();
            };
            if json {
                return Answer::ok(format!("{}\n", nodes_json(&[node])));
            }
            let mut text = String::new();
            if human {
                text.push_str("\tthis node has the following heartbeat links:\n");
            }
            text.push_str(&links_text(node, verbose));
            Answer::ok(text)
        }
        "hblinkstatus" => {
            let (Some(name), Some(link)) = (param(0), param(1)) else {
                return not_enough();
            };
            let Some(node) = node(facts, name) else {
                return unknown_node();
            };
            let Some(found) = node.links.iter().find(|l| l.name == link) else {
                return Answer::fail(
                    exit::UNKNOWN_ERROR,
                    format!("cl_status: ERROR: Cannot get heartbeat link status\ncl_status: ERROR: REASON: {name} has no link {link}\n"),
                );
            };
            let status = if found.up { "up" } else { "dead" };
            let stdout = if json {
                format!(
                    "{{\"node\":{},\"link\":{},\"status\":\"{status}\"}}\n",
                    json_string(&node.name),
                    json_string(link)
                )
            } else if human {
                format!("The node {name}'s heartbeat link {link} is {status}\n")
            } else {
                format!("{status}\n")
            };
            Answer {
                stdout,
                stderr: String::new(),
                code: if found.up { exit::OK } else { exit::NORMAL_FAIL },
            }
        }
        "clientstatus" => {
            let (Some(name), Some(client)) = (param(0), param(1)) else {
                return not_enough();
            };
            if node(facts, name).is_none() {
                return unknown_node();
            }
            if name.to_lowercase() != facts.local {
                return Answer::fail(
                    exit::UNKNOWN_ERROR,
                    format!("cl_status: ERROR: Cannot get heartbeat client {client}'s status\ncl_status: ERROR: REASON: only this node's clients ({}) can be asked here\n", facts.local),
                );
            }
            let online = facts
                .clients
                .iter()
                .any(|(name, running)| name == client && *running);
            let status = if online { "online" } else { "offline" };
            let stdout = if json {
                format!(
                    "{{\"node\":{},\"client\":{},\"status\":\"{status}\"}}\n",
                    json_string(&facts.local),
                    json_string(client)
                )
            } else {
                format!("{status}\n")
            };
            Answer {
                stdout,
                stderr: String::new(),
                code: if online { exit::OK } else { exit::NORMAL_FAIL },
            }
        }
        "rscstatus" => {
            let status = if facts.in_transition {
                "transition"
            } else {
                resource_status(&facts.held)
            };
            let groups: Vec<String> = facts.held.iter().map(|(g, _)| g.clone()).collect();
            // Heartbeat's one word stays as it was for scripts; the sentences and JSON also
            // say what is held back from starting anywhere, and until when.
            Answer::ok(if json {
                let holds: Vec<String> = facts.holds.iter().map(crate::json_hold).collect();
                format!(
                    "{{\"status\":\"{status}\",\"groups\":{},\"holds\":[{}]}}\n",
                    json_strings(&groups),
                    holds.join(",")
                )
            } else if human {
                let mut text = format!("This node is holding {status} resources.\n");
                for hold in &facts.holds {
                    text.push_str(&format!("Held back: {}\n", crate::hold_text(hold)));
                }
                text
            } else {
                format!("{status}\n")
            })
        }
        "hbtiming" => {
            let mut timing = facts.timing.clone();
            if let Some(name) = param(0) {
                timing.nodes.retain(|n| n.node == name.to_lowercase());
                if timing.nodes.is_empty() {
                    return unknown_node();
                }
            }
            Answer::ok(if json {
                format!("{}\n", crate::json_timing(&timing))
            } else {
                let mut text = crate::timing_lines(&timing, verbose).join("\n");
                text.push('\n');
                text
            })
        }
        "counters" => Answer::ok(if json {
            format!("{}\n", crate::json_counters(&facts.counters))
        } else {
            facts
                .counters
                .iter()
                .map(|(name, value)| format!("{name} {value}\n"))
                .collect()
        }),
        _ => {
            let Some(name) = invocation.parameter.as_deref() else {
                return Answer::fail(
                    exit::PARAMETER_ERROR,
                    "cl_status: ERROR: parameter name required\n",
                );
            };
            let Some((_, value)) = facts.parameters.iter().find(|(key, _)| key == name) else {
                return Answer::fail(
                    exit::NORMAL_FAIL,
                    format!("cl_status: ERROR: Cannot get parameter {name}'s value\n"),
                );
            };
            Answer::ok(if json {
                format!(
                    "{{\"parameter\":{},\"value\":{}}}\n",
                    json_string(name),
                    json_string(value)
                )
            } else if human {
                format!("Heartbeat parameter {name}'s value: {value}\n")
            } else {
                format!("{value}\n")
            })
        }
    }
}

async fn gather(connection: &zbus::Connection) -> zbus::Result<Facts> {
    let comm = CommProxy::new(connection).await?;
    let local = comm.local_node().await?;
    let nodes = comm.list_nodes().await?;
    let mut held = Vec::new();
    let mut holds = Vec::new();
    let mut in_transition = false;
    if crate::is_running(connection, names::crmd::BUS_NAME).await {
        let crmd = CrmdProxy::new(connection).await?;
        for group in crmd.groups().await? {
            if group.node == local {
                held.push((group.group, group.preferred_node == local));
            }
        }
        holds = crmd.holds().await?;
        in_transition = crmd.in_transition().await.unwrap_or(false);
    }
    let master = hbapi::master::HeartbeatProxy::new(connection).await?;
    let clients = master
        .list_children()
        .await?
        .into_iter()
        .map(|c| (c.name, c.state == "running"))
        .collect();
    let mut counters: Vec<(String, u64)> = comm.counters().await?.into_iter().collect();
    counters.sort();
    let timing = comm.heartbeat_timing().await?;
    Ok(Facts {
        local,
        nodes,
        timing,
        counters,
        held,
        in_transition,
        holds,
        parameters: master.parameters().await?,
        clients,
    })
}

/// `cl_status`'s entry point.
pub async fn main(args: &[String]) -> ExitCode {
    if args.is_empty() || (args.len() == 1 && args[0] == "-h") || args[0] == "--help" {
        outln!("{}", HELP.trim_end());
        return ExitCode::SUCCESS;
    }
    let invocation = match parse(args) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("cl_status: ERROR: {message}");
            return ExitCode::from(exit::PARAMETER_ERROR);
        }
    };
    let connection = match crate::connect().await {
        Some(connection) if crate::is_running(&connection, names::comm::BUS_NAME).await => Some(connection),
        _ => None,
    };
    let facts = match &connection {
        None => None,
        Some(connection) => {
            match tokio::time::timeout(std::time::Duration::from_secs(5), gather(connection)).await {
                Ok(Ok(facts)) => Some(facts),
                Ok(Err(error)) => {
                    eprintln!("cl_status: ERROR: {error}");
                    return ExitCode::from(exit::UNKNOWN_ERROR);
                }
                Err(_) => {
                    eprintln!("cl_status: ERROR: no answer from heartbeat within 5 s");
                    return ExitCode::from(exit::TIMEOUT);
                }
            }
        }
    };
    let answer = answer(&invocation, facts.as_ref());
    crate::write_out(&answer.stdout);
    eprint!("{}", answer.stderr);
    ExitCode::from(answer.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbapi::comm::LinkInfo;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn facts() -> Facts {
        let node = |name: &str, kind: &str, status: &str, up: bool| NodeInfo {
            name: name.into(),
            kind: kind.into(),
            status: status.into(),
            links: vec![LinkInfo {
                name: "eth0".into(),
                up,
            }],
        };
        Facts {
            local: "alpha".into(),
            nodes: vec![
                node("alpha", "normal", "active", true),
                node("bravo", "normal", "dead", false),
                node("10.0.0.254", "ping", "ping", true),
            ],
            held: vec![("web".into(), true)],
            in_transition: false,
            holds: Vec::new(),
            parameters: vec![("deadtime".into(), "1".into())],
            clients: vec![("ipfail".into(), true)],
            timing: hbapi::comm::HeartbeatTiming {
                keepalive_ms: 250,
                warntime_ms: 500,
                deadtime_ms: 1000,
                nodes: vec![hbapi::comm::NodeGaps {
                    node: "bravo".into(),
                    longest_gap_ms: 300,
                    late: 0,
                    links: vec![hbapi::comm::LinkGap {
                        link: "eth0".into(),
                        longest_gap_ms: 300,
                        late: 0,
                    }],
                }],
                ..Default::default()
            },
            counters: vec![("dropped_auth".into(), 3), ("received".into(), 40)],
        }
    }

    #[test]
    fn hbtiming_and_counters_answer_from_hbcomm() {
        assert_eq!(
            run("hbtiming bravo").stdout,
            "keepalive 250 ms, warntime 500 ms, deadtime 1000 ms\nbravo: longest gap 300 ms, 0 late; suggested deadtime 450–600 ms (FAQ 12: 1.5–2 × the longest gap)\n"
        );
        assert!(run("hbtiming -v")
            .stdout
            .ends_with("  eth0: longest gap 300 ms, 0 late\n"));
        assert_eq!(run("hbtiming zulu").code, exit::PARAMETER_ERROR);
        assert!(run("hbtiming --json")
            .stdout
            .starts_with("{\"keepalive_ms\":250,"));
        assert_eq!(run("counters").stdout, "dropped_auth 3\nreceived 40\n");
        assert_eq!(
            run("counters --json").stdout,
            "{\"dropped_auth\":3,\"received\":40}\n"
        );
    }

    fn run(text: &str) -> Answer {
        answer(&parse(&args(text)).unwrap(), Some(&facts()))
    }

    #[test]
    fn outputs_and_exit_codes_are_heartbeats() {
        assert_eq!(run("listnodes").stdout, "alpha\nbravo\n10.0.0.254\n");
        assert_eq!(run("listnodes -p").stdout, "10.0.0.254\n");
        assert_eq!(run("listnodes -n").stdout, "alpha\nbravo\n");
        assert_eq!(run("listnodes -n -p").stdout, "alpha\nbravo\n10.0.0.254\n");
        assert_eq!(
            run("listnodes -v -n").stdout,
            "\nalpha\tactive\t(nodetype: normal)\n\teth0\tup\n\nbravo\tdead\t(nodetype: normal)\n\teth0\tdead\n"
        );
        assert_eq!(
            run("nodestatus bravo"),
            Answer {
                stdout: "dead\n".into(),
                stderr: String::new(),
                code: 1
            }
        );
        assert_eq!(run("nodestatus alpha").code, 0);
        assert_eq!(
            run("nodestatus -m alpha").stdout,
            "The cluster node alpha is active\n"
        );
        assert_eq!(run("nodestatus charlie").code, exit::PARAMETER_ERROR);
        assert_eq!(run("nodestatus").code, exit::PARAMETER_ERROR);
        assert_eq!(run("nodetype 10.0.0.254").stdout, "ping\n");
        assert_eq!(run("listhblinks -v bravo").stdout, "\teth0\tdead\n");
        assert_eq!(run("hblinkstatus alpha eth0").stdout, "up\n");
        assert_eq!(run("hblinkstatus bravo eth0").code, 1);
        assert_eq!(run("hblinkstatus bravo eth9").code, exit::UNKNOWN_ERROR);
        assert_eq!(run("clientstatus alpha ipfail").stdout, "online\n");
        assert_eq!(run("clientstatus alpha crmd").code, 1);
        assert_eq!(run("rscstatus").stdout, "local\n");
        assert_eq!(
            run("rscstatus -m").stdout,
            "This node is holding local resources.\n"
        );
        assert_eq!(run("hbparameter -p deadtime").stdout, "1\n");
        assert_eq!(run("parameter -p deadtime").stdout, "1\n");
        assert_eq!(run("hbparameter -p nosuch").code, 1);
        assert_eq!(run("hbparameter").code, exit::PARAMETER_ERROR);
        assert_eq!(run("hbstatus").stdout, "Heartbeat is running on this machine.\n");
        let stopped = answer(&parse(&args("hbstatus")).unwrap(), None);
        assert_eq!(
            (stopped.stdout.as_str(), stopped.code),
            ("Heartbeat is stopped on this machine.\n", 1)
        );
        assert_eq!(answer(&parse(&args("listnodes")).unwrap(), None).code, 1);
    }

    #[test]
    fn bad_sub_commands_and_options_are_parameter_errors() {
        assert!(parse(&args("frobnicate")).is_err());
        assert!(parse(&args("nodestatus -v alpha")).is_err());
        assert!(parse(&args("hbparameter -p")).is_err());
    }

    #[test]
    fn rscstatus_says_whose_resources_this_node_holds() {
        assert_eq!(resource_status(&[]), "none");
        assert_eq!(resource_status(&[("a".into(), false)]), "foreign");
        assert_eq!(resource_status(&[("a".into(), false), ("b".into(), true)]), "all");
    }

    #[test]
    fn rscstatus_shows_what_is_held_back_in_sentences_and_json_only() {
        let mut held = facts();
        held.holds = vec![hbapi::crmd::HoldInfo {
            node: "bravo".into(),
            kind: "lost-node-stop".into(),
            groups: vec!["db".into()],
            remaining_ms: 12_500,
        }];
        let run = |text: &str| answer(&parse(&args(text)).unwrap(), Some(&held));
        assert_eq!(
            run("rscstatus").stdout,
            "local\n",
            "Heartbeat's word, for scripts"
        );
        let sentences = run("rscstatus -m").stdout;
        assert!(
            sentences
                .starts_with("This node is holding local resources.\nHeld back: db held: bravo was lost"),
            "{sentences}"
        );
        assert!(sentences.contains("free in 12.5 s"), "{sentences}");
        assert_eq!(
            run("rscstatus --json").stdout,
            "{\"status\":\"local\",\"groups\":[\"web\"],\"holds\":[{\"node\":\"bravo\",\"kind\":\"lost-node-stop\",\"groups\":[\"db\"],\"remaining_ms\":12500}]}\n"
        );
    }
}
