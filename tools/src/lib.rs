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

#[cfg(test)]
mod tests {
    #[test]
    fn json_escapes() {
        assert_eq!(
            super::json_string("a\"b\\c\nd\u{1}"),
            "\"a\\\"b\\\\c\\nd\\u0001\""
        );
        assert_eq!(super::json_strings(&["x".into(), "y".into()]), "[\"x\",\"y\"]");
    }
}
