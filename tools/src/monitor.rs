//! `hb_mon`: the live cluster monitor, in the spirit of Pacemaker's `crm_mon`. It redraws on
//! the bus signals that change what it shows (node and link status, group changes,
//! completed transitions, fences) — it does not poll. `-1` prints once; `--json` prints the
//! same facts as JSON.

use std::process::ExitCode;

use futures_util::StreamExt;

use hbapi::comm::{CommProxy, NodeInfo, NodeStatus};
use hbapi::crmd::{CrmdProxy, DecisionInfo, GroupInfo, HoldInfo};
use hbapi::names;
use hbapi::stonith::{FenceRecord, StonithProxy};

use crate::{hold_text, json_hold, json_string, json_strings};

/// Decisions and fences shown.
const RECENT: usize = 10;

/// Everything the monitor shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// This node.
    pub local: String,
    /// The partition's decision maker.
    pub decision_maker: String,
    /// Nodes and ping nodes.
    pub nodes: Vec<NodeInfo>,
    /// Groups and where they run.
    pub groups: Vec<GroupInfo>,
    /// This node's unexpired monitor failures per resource.
    pub fail_counts: Vec<(String, u32)>,
    /// The decision maker's recent decisions (this node's own history).
    pub decisions: Vec<DecisionInfo>,
    /// Recent fences.
    pub fences: Vec<FenceRecord>,
    /// Groups held back while a node may still run them.
    pub holds: Vec<HoldInfo>,
    /// hbcomm's timers and the peers' heartbeat gaps.
    pub timing: hbapi::comm::HeartbeatTiming,
    /// hbcomm's counters, sorted by name.
    pub counters: Vec<(String, u64)>,
}

/// `HH:MM:SS` (UTC) of a time in seconds since the epoch.
fn clock(seconds: u64) -> String {
    let of_day = seconds % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

fn last<T: Clone>(items: &[T]) -> Vec<T> {
    items[items.len().saturating_sub(RECENT)..].to_vec()
}

/// The human-readable screen.
pub fn render(snapshot: &Snapshot) -> String {
    let mut text = format!(
        "heartbeat-rs on {} — decision maker: {}\n\nNodes:\n",
        snapshot.local,
        if snapshot.decision_maker.is_empty() {
            "none"
        } else {
            &snapshot.decision_maker
        }
    );
    let width = snapshot.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for node in &snapshot.nodes {
        let links: Vec<String> = node
            .links
            .iter()
            .map(|l| format!("{} {}", l.name, if l.up { "up" } else { "DOWN" }))
            .collect();
        let kind = if !node.is_ping() {
            String::new()
        } else {
            format!(" ({})", node.kind)
        };
        text.push_str(&format!("  {:width$}  {:8}{kind}", node.name, node.status));
        if !links.is_empty() {
            text.push_str(&format!("  links: {}", links.join(", ")));
        }
        text.push('\n');
    }
    if !snapshot.timing.nodes.is_empty() {
        text.push_str("\nHeartbeats:\n");
        for line in crate::timing_lines(&snapshot.timing, false) {
            text.push_str(&format!("  {line}\n"));
        }
    }
    // Dropped packets are what FAQ 13 asks about (a foreign key, another cluster, replays).
    let dropped: Vec<String> = snapshot
        .counters
        .iter()
        .filter(|(name, value)| name.starts_with("dropped_") && *value > 0)
        .map(|(name, value)| {
            format!(
                "{} {value}",
                name.trim_start_matches("dropped_").replace('_', " ")
            )
        })
        .collect();
    if !dropped.is_empty() {
        text.push_str(&format!("  packets dropped: {}\n", dropped.join(", ")));
    }
    text.push_str("\nGroups:\n");
    if snapshot.groups.is_empty() {
        text.push_str("  (none configured)\n");
    }
    let width = snapshot.groups.iter().map(|g| g.group.len()).max().unwrap_or(0);
    for group in &snapshot.groups {
        let place = if group.node.is_empty() {
            "stopped".to_owned()
        } else {
            format!("on {}", group.node)
        };
        text.push_str(&format!(
            "  {:width$}  {place:12}  (prefers {})",
            group.group, group.preferred_node
        ));
        if !group.failed_on.is_empty() {
            text.push_str(&format!("  FAILED on {}", group.failed_on.join(", ")));
        }
        text.push('\n');
    }
    if !snapshot.holds.is_empty() {
        text.push_str("\nHeld back:\n");
        for hold in &snapshot.holds {
            text.push_str(&format!("  {}\n", hold_text(hold)));
        }
    }
    if !snapshot.fail_counts.is_empty() {
        text.push_str(&format!("\nFail counts on {}:\n", snapshot.local));
        for (resource, count) in &snapshot.fail_counts {
            text.push_str(&format!("  {resource}: {count}\n"));
        }
    }
    if !snapshot.decisions.is_empty() {
        text.push_str("\nRecent decisions:\n");
        for decision in last(&snapshot.decisions) {
            text.push_str(&format!(
                "  {}  {}  (after: {})\n",
                clock(decision.time),
                decision.decision,
                decision.trigger
            ));
        }
    }
    if !snapshot.fences.is_empty() {
        text.push_str("\nFencing:\n");
        for fence in last(&snapshot.fences) {
            text.push_str(&format!(
                "  {}  {} {} {} via {} ({} ms): {}\n",
                clock(fence.started),
                fence.action,
                fence.target,
                if fence.ok { "succeeded" } else { "FAILED" },
                if fence.device.is_empty() {
                    "-"
                } else {
                    &fence.device
                },
                fence.duration_ms,
                fence.reason
            ));
        }
    }
    text
}

/// The JSON form.
pub fn render_json(snapshot: &Snapshot) -> String {
    let nodes: Vec<&NodeInfo> = snapshot.nodes.iter().collect();
    let groups: Vec<String> = snapshot
        .groups
        .iter()
        .map(|g| {
            format!(
                "{{\"group\":{},\"node\":{},\"preferred_node\":{},\"failed_on\":{}}}",
                json_string(&g.group),
                json_string(&g.node),
                json_string(&g.preferred_node),
                json_strings(&g.failed_on)
            )
        })
        .collect();
    let fail_counts: Vec<String> = snapshot
        .fail_counts
        .iter()
        .map(|(r, c)| format!("{{\"resource\":{},\"count\":{c}}}", json_string(r)))
        .collect();
    let decisions: Vec<String> = last(&snapshot.decisions)
        .iter()
        .map(|d| {
            format!(
                "{{\"id\":{},\"time\":{},\"decision\":{},\"trigger\":{}}}",
                d.id,
                d.time,
                json_string(&d.decision),
                json_string(&d.trigger)
            )
        })
        .collect();
    let fences: Vec<String> = last(&snapshot.fences)
        .iter()
        .map(|f| {
            format!(
                "{{\"target\":{},\"action\":{},\"ok\":{},\"device\":{},\"started\":{},\"duration_ms\":{},\"reason\":{}}}",
                json_string(&f.target),
                json_string(&f.action),
                f.ok,
                json_string(&f.device),
                f.started,
                f.duration_ms,
                json_string(&f.reason)
            )
        })
        .collect();
    let holds: Vec<String> = snapshot.holds.iter().map(json_hold).collect();
    format!(
        "{{\"node\":{},\"decision_maker\":{},\"nodes\":{},\"heartbeat_timing\":{},\"counters\":{},\"groups\":[{}],\"holds\":[{}],\"fail_counts\":[{}],\"decisions\":[{}],\"fences\":[{}]}}\n",
        json_string(&snapshot.local),
        json_string(&snapshot.decision_maker),
        crate::json_nodes(&nodes),
        crate::json_timing(&snapshot.timing),
        crate::json_counters(&snapshot.counters),
        groups.join(","),
        holds.join(","),
        fail_counts.join(","),
        decisions.join(","),
        fences.join(",")
    )
}

async fn gather(connection: &zbus::Connection) -> zbus::Result<Snapshot> {
    let comm = CommProxy::new(connection).await?;
    let mut snapshot = Snapshot {
        local: comm.local_node().await?,
        nodes: comm.list_nodes().await?,
        timing: comm.heartbeat_timing().await?,
        ..Snapshot::default()
    };
    snapshot.counters = comm.counters().await?.into_iter().collect();
    snapshot.counters.sort();
    if crate::is_running(connection, names::crmd::BUS_NAME).await {
        let crmd = CrmdProxy::new(connection).await?;
        snapshot.decision_maker = crmd.decision_maker().await?;
        snapshot.groups = crmd.groups().await?;
        snapshot.fail_counts = crmd.fail_counts().await?;
        snapshot.decisions = crmd.history().await?;
        // Older crmds have no Holds: shown as none.
        snapshot.holds = crmd.holds().await.unwrap_or_default();
    }
    if crate::is_running(connection, names::stonithd::BUS_NAME).await {
        snapshot.fences = StonithProxy::new(connection).await?.history().await?;
    }
    Ok(snapshot)
}

/// What `hb_mon` is asked to do.
#[derive(Debug, clap::Parser)]
#[command(
    name = "hb_mon",
    version = hbapi::VERSION,
    about = "Live cluster monitor: nodes, links, groups, failures, decisions and fences"
)]
pub struct Args {
    /// Print once and exit.
    #[arg(short = '1', long = "one-shot")]
    pub once: bool,
    /// Print JSON (once unless live mode is asked for with --live).
    #[arg(long)]
    pub json: bool,
    /// With --json: a JSON line at every change.
    #[arg(long, requires = "json")]
    pub live: bool,
    /// Explain why GROUP runs where it runs (or nowhere), from the decisions this node made,
    /// and exit.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["json", "live"])]
    pub why: Option<String>,
}

/// Why `group` is where it is: its state, then every decision about it with what set it off.
pub fn explain(snapshot: &Snapshot, group: &str) -> Result<String, String> {
    let info = snapshot.groups.iter().find(|g| g.group == group).ok_or_else(|| {
        format!(
            "no group {group:?}; groups: {}",
            snapshot
                .groups
                .iter()
                .map(|g| g.group.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut text = match info.node.as_str() {
        "" => format!("{group} runs nowhere now. It prefers {}.\n", info.preferred_node),
        node if node == info.preferred_node => format!("{group} runs on {node}, its preferred node.\n"),
        node => format!("{group} runs on {node}; it prefers {}.\n", info.preferred_node),
    };
    if !info.failed_on.is_empty() {
        text.push_str(&format!(
            "It failed on {}, which may not run it until its failures expire or are cleaned up (hb_cleanup {group}).\n",
            info.failed_on.join(", ")
        ));
    }
    for hold in snapshot
        .holds
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
    {
        text.push_str(&format!("{}.\n", hold_text(hold)));
    }
    if let Some(preferred) = snapshot.nodes.iter().find(|n| n.name == info.preferred_node) {
        if preferred.node_status() != NodeStatus::Active && info.node != info.preferred_node {
            text.push_str(&format!(
                "Its preferred node {} is {}.\n",
                preferred.name, preferred.status
            ));
        }
    }
    let about: Vec<&DecisionInfo> = snapshot
        .decisions
        .iter()
        .filter(|d| d.decision.split_whitespace().nth(1) == Some(group))
        .collect();
    if about.is_empty() {
        text.push_str(&format!(
            "{} made no decision about it{}.\n",
            snapshot.local,
            if snapshot.decision_maker != snapshot.local && !snapshot.decision_maker.is_empty() {
                format!(" (the decision maker is {}: ask there)", snapshot.decision_maker)
            } else {
                String::new()
            }
        ));
    } else {
        text.push_str(&format!(
            "Decisions {} made about it, oldest first:\n",
            snapshot.local
        ));
        for decision in about {
            text.push_str(&format!(
                "  {}  {}  because: {}\n",
                clock(decision.time),
                decision.decision,
                decision.trigger
            ));
        }
    }
    Ok(text)
}

/// `hb_mon`'s entry point.
pub async fn main(args: Args) -> ExitCode {
    let Some(connection) = crate::connect().await else {
        eprintln!("hb_mon: heartbeat is not running here (no cluster bus)");
        return ExitCode::from(1);
    };
    if !crate::is_running(&connection, names::comm::BUS_NAME).await {
        eprintln!("hb_mon: hbcomm is not running here");
        return ExitCode::from(1);
    }
    if let Some(group) = &args.why {
        let explained = gather(&connection)
            .await
            .map_err(|e| e.to_string())
            .and_then(|snapshot| explain(&snapshot, group));
        return match explained {
            Ok(text) => {
                crate::write_out(&text);
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("hb_mon: {message}");
                ExitCode::from(1)
            }
        };
    }
    let once = args.once || (args.json && !args.live);
    let show = |snapshot: &Snapshot| {
        if args.json {
            crate::write_out(&render_json(snapshot));
        } else if once {
            crate::write_out(&render(snapshot));
        } else {
            // Home, clear, draw.
            crate::write_out(&format!("\x1b[H\x1b[2J{}", render(snapshot)));
        }
    };
    if once {
        return match gather(&connection).await {
            Ok(snapshot) => {
                show(&snapshot);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("hb_mon: {error}");
                ExitCode::from(1)
            }
        };
    }
    // Subscribed before the first drawing, so that nothing between the two is missed.
    let changes = async {
        let comm = CommProxy::new(&connection).await?;
        let crmd = CrmdProxy::new(&connection).await?;
        let stonith = StonithProxy::new(&connection).await?;
        let streams: Vec<futures_util::stream::BoxStream<'static, ()>> = vec![
            comm.receive_node_status_changed().await?.map(|_| ()).boxed(),
            comm.receive_link_status_changed().await?.map(|_| ()).boxed(),
            crmd.receive_group_changed().await?.map(|_| ()).boxed(),
            crmd.receive_transition_completed().await?.map(|_| ()).boxed(),
            stonith.receive_fence_finished().await?.map(|_| ()).boxed(),
        ];
        Ok::<_, zbus::Error>(futures_util::stream::select_all(streams))
    };
    let mut changes = match changes.await {
        Ok(changes) => changes,
        Err(error) => {
            eprintln!("hb_mon: {error}");
            return ExitCode::from(1);
        }
    };
    loop {
        match gather(&connection).await {
            Ok(snapshot) => show(&snapshot),
            Err(error) => {
                eprintln!("hb_mon: {error}");
                return ExitCode::from(1);
            }
        }
        if changes.next().await.is_none() {
            return ExitCode::SUCCESS;
        }
        // A burst of changes (a failover sends several) is drawn once.
        while let Ok(Some(())) =
            tokio::time::timeout(std::time::Duration::from_millis(20), changes.next()).await
        {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbapi::comm::LinkInfo;

    fn snapshot() -> Snapshot {
        Snapshot {
            local: "alpha".into(),
            decision_maker: "alpha".into(),
            nodes: vec![NodeInfo {
                name: "bravo".into(),
                kind: "normal".into(),
                status: "dead".into(),
                links: vec![LinkInfo {
                    name: "eth0".into(),
                    up: false,
                }],
            }],
            groups: vec![GroupInfo {
                group: "web".into(),
                preferred_node: "bravo".into(),
                node: "alpha".into(),
                failed_on: vec![],
            }],
            fail_counts: vec![("web".into(), 2)],
            decisions: vec![DecisionInfo {
                id: 1,
                time: 3661,
                decision: "start web alpha".into(),
                trigger: "node bravo is dead".into(),
            }],
            fences: vec![],
            holds: vec![],
            timing: hbapi::comm::HeartbeatTiming {
                keepalive_ms: 200,
                warntime_ms: 500,
                deadtime_ms: 1000,
                nodes: vec![hbapi::comm::NodeGaps {
                    node: "bravo".into(),
                    longest_gap_ms: 700,
                    late: 1,
                    links: vec![],
                }],
                ..Default::default()
            },
            counters: vec![
                ("dropped_forged".into(), 4),
                ("dropped_replay".into(), 0),
                ("sent".into(), 9),
            ],
        }
    }

    #[test]
    fn the_screen_shows_heartbeat_gaps_and_dropped_packets() {
        let screen = render(&snapshot());
        assert!(
            screen.contains("\nHeartbeats:\n  keepalive 200 ms, warntime 500 ms, deadtime 1000 ms\n  bravo: longest gap 700 ms, 1 late; suggested deadtime 1050–1400 ms (FAQ 12: 1.5–2 × the longest gap) — deadtime is below it"),
            "{screen}"
        );
        assert!(screen.contains("  packets dropped: forged 4\n"), "{screen}");
        let json = render_json(&snapshot());
        assert!(
            json.contains("\"counters\":{\"dropped_forged\":4,\"dropped_replay\":0,\"sent\":9}"),
            "{json}"
        );
        assert!(
            json.contains("\"heartbeat_timing\":{\"keepalive_ms\":200,"),
            "{json}"
        );
    }

    #[test]
    fn a_hold_is_shown_with_its_end_and_explained() {
        let mut held = snapshot();
        held.groups[0].node = String::new();
        held.holds = vec![HoldInfo {
            node: "bravo".into(),
            kind: "lost-node-stop".into(),
            groups: vec!["web".into()],
            remaining_ms: 12_500,
        }];
        let screen = render(&held);
        assert!(
            screen.contains("Held back:\n  web held: bravo was lost while it ran them"),
            "{screen}"
        );
        assert!(
            screen.contains("free in 12.5 s (ha.cf lost_node_wait sets this wait)"),
            "{screen}"
        );
        let why = explain(&held, "web").unwrap();
        assert!(why.contains("web held: bravo was lost"), "{why}");
        assert!(render_json(&held).contains("\"holds\":[{\"node\":\"bravo\",\"kind\":\"lost-node-stop\",\"groups\":[\"web\"],\"remaining_ms\":12500}]"));
    }

    #[test]
    fn the_screen_says_where_groups_run_and_why() {
        let text = render(&snapshot());
        assert!(text.contains("decision maker: alpha"), "{text}");
        assert!(text.contains("bravo  dead"), "{text}");
        assert!(text.contains("eth0 DOWN"), "{text}");
        assert!(text.contains("web  on alpha      (prefers bravo)"), "{text}");
        assert!(text.contains("web: 2"), "{text}");
        assert!(
            text.contains("01:01:01  start web alpha  (after: node bravo is dead)"),
            "{text}"
        );
    }

    #[test]
    fn why_tells_where_a_group_runs_and_which_decisions_put_it_there() {
        let text = explain(&snapshot(), "web").unwrap();
        assert!(
            text.starts_with("web runs on alpha; it prefers bravo.\n"),
            "{text}"
        );
        assert!(text.contains("Its preferred node bravo is dead."), "{text}");
        assert!(
            text.contains("01:01:01  start web alpha  because: node bravo is dead"),
            "{text}"
        );
        assert!(explain(&snapshot(), "db").unwrap_err().contains("groups: web"));
    }

    #[test]
    fn json_has_every_section() {
        let json = render_json(&snapshot());
        for key in [
            "\"nodes\":[",
            "\"groups\":[",
            "\"holds\":[",
            "\"fail_counts\":[",
            "\"decisions\":[",
            "\"fences\":[]",
        ] {
            assert!(json.contains(key), "{json}");
        }
    }
}
