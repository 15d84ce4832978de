//! What the administration commands share: finding the cluster bus and printing JSON.

pub mod cl_status;
pub mod cleanup;
pub mod cli;
pub mod docs;
pub mod monitor;
pub mod standby;

use std::path::PathBuf;

/// Connects to the node's cluster bus: `HB_BUS_ADDRESS`, else what the master wrote in the
/// run directory (`HB_RUN_DIR`, default /run/heartbeat). `None` when the suite is not running.
pub async fn connect() -> Option<zbus::Connection> {
    let run_dir = std::env::var_os(hbapi::names::env::RUN_DIR)
        .map_or_else(|| PathBuf::from("/run/heartbeat"), PathBuf::from);
    let address = hbapi::bus::find_address(&run_dir)?;
    hbapi::bus::connect(&address).await.ok()
}

/// Whether `name` has an owner on `connection`.
pub async fn is_running(connection: &zbus::Connection, name: &str) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(connection).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return false;
    };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// Writes to stdout; a closed pipe (`stonith -L | head`) ends the command quietly, as it
/// ends C tools. (SIGPIPE itself stays ignored: a fence agent that exits without reading its
/// stdin must not kill the command that fed it.)
pub fn write_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// `print!` through [`write_out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_out(&format!($($arg)*)) };
}

/// `println!` through [`write_out`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::write_out(&format!("{}\n", format_args!($($arg)*))) };
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of strings.
pub fn json_strings(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(",")
    )
}

/// Nodes and their links as a JSON array (cl_status and hb_mon print the same form).
pub fn json_nodes(nodes: &[&hbapi::comm::NodeInfo]) -> String {
    let items: Vec<String> = nodes
        .iter()
        .map(|n| {
            let links: Vec<String> = n
                .links
                .iter()
                .map(|l| format!("{{\"link\":{},\"up\":{}}}", json_string(&l.name), l.up))
                .collect();
            format!(
                "{{\"node\":{},\"type\":{},\"status\":{},\"links\":[{}]}}",
                json_string(&n.name),
                json_string(&n.kind),
                json_string(&n.status),
                links.join(",")
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// One hold in words.
pub fn hold_text(hold: &hbapi::crmd::HoldInfo) -> String {
    let seconds = hold.remaining_ms as f64 / 1000.0;
    match hold.kind.as_str() {
        "lost-node-stop" => format!(
            "{} held: {} was lost while it ran them and, without fencing, stops them itself (it has no quorum); free in {seconds:.1} s (ha.cf lost_node_wait sets this wait)",
            hold.groups.join(", "),
            hold.node
        ),
        "oops-window" => format!(
            "{} held: {}'s daemon was stopped; FreeHA's oops window ends in {seconds:.1} s",
            hold.groups.join(", "),
            hold.node
        ),
        other => format!("{} held by {} ({other}), {seconds:.1} s left", hold.groups.join(", "), hold.node),
    }
}

/// One hold as a JSON object (hb_mon's and cl_status's `holds`).
pub fn json_hold(hold: &hbapi::crmd::HoldInfo) -> String {
    format!(
        "{{\"node\":{},\"kind\":{},\"groups\":{},\"remaining_ms\":{}}}",
        json_string(&hold.node),
        json_string(&hold.kind),
        json_strings(&hold.groups),
        hold.remaining_ms
    )
}

/// FAQ 12's tuning, done from hbcomm's measures: the timers, then per peer its longest gap,
/// how many heartbeats came late, the deadtime range the FAQ suggests and whether the
/// configured one is below it; `links` adds one line per link.
pub fn timing_lines(timing: &hbapi::comm::HeartbeatTiming, links: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "keepalive {} ms, warntime {} ms, deadtime {} ms",
        timing.keepalive_ms, timing.warntime_ms, timing.deadtime_ms
    )];
    if !timing.watchdog.is_empty() {
        let seconds = timing.watchdog_timeout_ms / 1000;
        lines.push(if timing.watchdog_starving.is_empty() {
            format!(
                "watchdog {} (timeout {seconds} s): fed with every heartbeat",
                timing.watchdog
            )
        } else {
            format!(
                "watchdog {} (timeout {seconds} s): NOT FED — {}: this node resets when it expires",
                timing.watchdog, timing.watchdog_starving
            )
        });
    }
    for node in &timing.nodes {
        if node.longest_gap_ms == 0 {
            lines.push(format!("{}: no gap measured yet", node.node));
            continue;
        }
        let (low, high) =
            hbapi::comm::suggested_deadtime(std::time::Duration::from_millis(node.longest_gap_ms));
        let verdict = if u128::from(timing.deadtime_ms) < low.as_millis() {
            " — deadtime is below it: raise it, or find what delays the heartbeats"
        } else {
            ""
        };
        lines.push(format!(
            "{}: longest gap {} ms, {} late; suggested deadtime {}–{} ms (FAQ 12: 1.5–2 × the longest gap){verdict}",
            node.node,
            node.longest_gap_ms,
            node.late,
            low.as_millis(),
            high.as_millis()
        ));
        if links {
            for link in &node.links {
                lines.push(format!(
                    "  {}: longest gap {} ms, {} late",
                    link.link, link.longest_gap_ms, link.late
                ));
            }
        }
    }
    lines
}

/// The timing as a JSON object (hb_mon's and cl_status's `heartbeat_timing`).
pub fn json_timing(timing: &hbapi::comm::HeartbeatTiming) -> String {
    let nodes: Vec<String> = timing
        .nodes
        .iter()
        .map(|node| {
            let (low, high) =
                hbapi::comm::suggested_deadtime(std::time::Duration::from_millis(node.longest_gap_ms));
            let links: Vec<String> = node
                .links
                .iter()
                .map(|l| {
                    format!(
                        "{{\"link\":{},\"longest_gap_ms\":{},\"late\":{}}}",
                        json_string(&l.link),
                        l.longest_gap_ms,
                        l.late
                    )
                })
                .collect();
            format!(
                "{{\"node\":{},\"longest_gap_ms\":{},\"late\":{},\"suggested_deadtime_ms\":[{},{}],\"links\":[{}]}}",
                json_string(&node.node),
                node.longest_gap_ms,
                node.late,
                low.as_millis(),
                high.as_millis(),
                links.join(",")
            )
        })
        .collect();
    let watchdog = if timing.watchdog.is_empty() {
        "null".to_owned()
    } else {
        format!(
            "{{\"device\":{},\"timeout_ms\":{},\"fed\":{},\"starving\":{}}}",
            json_string(&timing.watchdog),
            timing.watchdog_timeout_ms,
            timing.watchdog_starving.is_empty(),
            json_string(&timing.watchdog_starving)
        )
    };
    format!(
        "{{\"keepalive_ms\":{},\"warntime_ms\":{},\"deadtime_ms\":{},\"watchdog\":{watchdog},\"nodes\":[{}]}}",
        timing.keepalive_ms,
        timing.warntime_ms,
        timing.deadtime_ms,
        nodes.join(",")
    )
}

/// hbcomm's counters, sorted by name, as a JSON object.
pub fn json_counters(counters: &[(String, u64)]) -> String {
    let items: Vec<String> = counters
        .iter()
        .map(|(name, value)| format!("{}:{value}", json_string(name)))
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests {
    #[test]
    fn timing_says_what_faq_12_would() {
        let timing = hbapi::comm::HeartbeatTiming {
            keepalive_ms: 200,
            warntime_ms: 500,
            deadtime_ms: 1000,
            nodes: vec![
                hbapi::comm::NodeGaps {
                    node: "bravo".into(),
                    longest_gap_ms: 840,
                    late: 2,
                    links: vec![hbapi::comm::LinkGap {
                        link: "eth0".into(),
                        longest_gap_ms: 400,
                        late: 0,
                    }],
                },
                hbapi::comm::NodeGaps {
                    node: "charlie".into(),
                    longest_gap_ms: 0,
                    late: 0,
                    links: vec![],
                },
            ],
            watchdog: "/dev/watchdog".into(),
            watchdog_timeout_ms: 2000,
            watchdog_starving: "no quorum while groups run here".into(),
        };
        assert_eq!(
            super::timing_lines(&timing, true),
            [
                "keepalive 200 ms, warntime 500 ms, deadtime 1000 ms",
                "watchdog /dev/watchdog (timeout 2 s): NOT FED — no quorum while groups run here: this node resets when it expires",
                "bravo: longest gap 840 ms, 2 late; suggested deadtime 1260–1680 ms (FAQ 12: 1.5–2 × the longest gap) — deadtime is below it: raise it, or find what delays the heartbeats",
                "  eth0: longest gap 400 ms, 0 late",
                "charlie: no gap measured yet",
            ]
        );
        assert_eq!(super::timing_lines(&timing, false).len(), 4);
        assert_eq!(
            super::json_timing(&timing),
            "{\"keepalive_ms\":200,\"warntime_ms\":500,\"deadtime_ms\":1000,\"watchdog\":{\"device\":\"/dev/watchdog\",\"timeout_ms\":2000,\"fed\":false,\"starving\":\"no quorum while groups run here\"},\"nodes\":[{\"node\":\"bravo\",\"longest_gap_ms\":840,\"late\":2,\"suggested_deadtime_ms\":[1260,1680],\"links\":[{\"link\":\"eth0\",\"longest_gap_ms\":400,\"late\":0}]},{\"node\":\"charlie\",\"longest_gap_ms\":0,\"late\":0,\"suggested_deadtime_ms\":[0,0],\"links\":[]}]}"
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            "\"a\\\"b\\\\c\\nd\\u0001\""
        );
        assert_eq!(super::json_strings(&["x".into(), "y".into()]), "[\"x\",\"y\"]");
    }
}
