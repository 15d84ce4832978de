//! `haresources`, read as Heartbeat's ResourceManager reads it.
//!
//! One group per logical line (a trailing `\` continues it): the preferred node, then resources
//! started left to right. A resource is `Script::arg1::arg2`, or a bare IPv4 address (with
//! optional `/cidr/iface/broadcast`), which means `IPaddr::address`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use super::diag::{Collector, ConfigError, Diagnostic, Location};
use super::model::{AgentClass, OpSettings, Resource, ResourceGroup};

/// Checks an agent (script) name: it names a file inside an agent directory, so it may not
/// contain a path separator or start with a dot.
pub fn check_agent_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty agent name".into());
    }
    if name.starts_with('.') {
        return Err(format!("agent name {name:?} may not start with '.'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '@')))
    {
        return Err(format!(
            "agent name {name:?} contains {bad:?} (letters, digits, _ - . + @ only; no paths)"
        ));
    }
    Ok(())
}

/// Whether a haresources token is Heartbeat's IP-address shorthand (`a.b.c.d[/…]`).
fn ip_shorthand(token: &str) -> Option<Result<(), String>> {
    let address = token.split('/').next().unwrap_or(token);
    let looks_like_ip = address.split('.').count() == 4
        && address
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
    if !looks_like_ip {
        return None;
    }
    if address.parse::<Ipv4Addr>().is_err() {
        return Some(Err(format!("{address:?} is not a valid IPv4 address")));
    }
    let mut parts = token.split('/').skip(1);
    if let Some(cidr) = parts.next() {
        let valid_cidr = cidr.parse::<u8>().is_ok_and(|bits| bits <= 32) || cidr.parse::<Ipv4Addr>().is_ok();
        if !cidr.is_empty() && !valid_cidr {
            return Some(Err(format!(
                "{cidr:?} is not a netmask (expected address/cidr/interface/broadcast, e.g. 10.0.0.10/24/eth0)"
            )));
        }
    }
    let _interface = parts.next();
    if let Some(broadcast) = parts.next() {
        if !broadcast.is_empty() && broadcast.parse::<Ipv4Addr>().is_err() {
            return Some(Err(format!("{broadcast:?} is not a broadcast address")));
        }
    }
    if parts.next().is_some() {
        return Some(Err(
            "too many '/' fields (expected address/cidr/interface/broadcast)".into(),
        ));
    }
    Some(Ok(()))
}

/// The kernel's longest interface name or address label (IFNAMSIZ less the NUL).
const MAX_LABEL: usize = 15;

/// FAQ 24: Heartbeat's IPaddr adds the address as an alias `NIC:N` with ifconfig. When
/// `NIC:N` is longer than the kernel allows, ifconfig truncates it to the interface's own name
/// — and the stop then runs `ifconfig NIC down`, taking the whole interface and its base
/// address down (tried with resource-agents' IPaddr on a 15-character veth). Refused here;
/// IPaddr2 uses no alias and takes such names.
fn check_ipaddr_interface(spec: &str) -> Result<(), String> {
    let Some(interface) = spec.split('/').nth(2).filter(|i| !i.is_empty()) else {
        return Ok(());
    };
    if interface.len() > MAX_LABEL {
        return Err(format!(
            "{interface:?} is not an interface name (at most {MAX_LABEL} characters)"
        ));
    }
    let alias = format!("{interface}:0");
    if alias.len() > MAX_LABEL {
        return Err(format!(
            "interface {interface:?} is too long for IPaddr: its alias {alias:?} exceeds the kernel's {MAX_LABEL} characters, ifconfig would truncate it, and stopping the address would take {interface} itself down (FAQ 24); use IPaddr2::{spec}, or an interface name of at most {} characters",
            MAX_LABEL - 2
        ));
    }
    Ok(())
}

/// Reads one haresources token into a resource.
pub fn parse_resource_token(token: &str) -> Result<Resource, String> {
    let (agent, args) = match ip_shorthand(token) {
        Some(Ok(())) => ("IPaddr".to_owned(), vec![token.to_owned()]),
        Some(Err(message)) => return Err(message),
        None => {
            let mut parts = token.split("::");
            let agent = parts.next().unwrap_or("").to_owned();
            (agent, parts.map(str::to_owned).collect())
        }
    };
    check_agent_name(&agent)?;
    if agent == "IPaddr" {
        if let Some(spec) = args.first() {
            check_ipaddr_interface(spec)?;
        }
    }
    let id = if args.len() == 1 && agent == "IPaddr" && token == args[0] {
        format!("IPaddr::{token}")
    } else {
        token.to_owned()
    };
    Ok(Resource {
        id,
        class: AgentClass::Heartbeat,
        agent,
        args,
        params: Default::default(),
        ops: OpSettings::default(),
    })
}

/// A word of a logical line, with the line and column it came from.
type Word = (String, usize, usize);

/// Reads haresources text. Node names are checked against `nodes` when it is not empty.
pub fn parse_haresources(
    path: &Path,
    text: &str,
    nodes: &[String],
) -> Result<(Vec<ResourceGroup>, Vec<Diagnostic>), ConfigError> {
    let mut diag = Collector::default();
    let mut groups: Vec<ResourceGroup> = Vec::new();
    let mut ids = BTreeSet::new();
    // (first line number, tokens with their line and column)
    let mut logical: Option<(usize, Vec<Word>)> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (index, raw) in lines.iter().enumerate() {
        let line_no = index + 1;
        let mut body = raw.trim_end_matches('\r');
        let continued = body.trim_end().ends_with('\\');
        if continued {
            body = body.trim_end().trim_end_matches('\\');
        }
        let entry = logical.get_or_insert_with(|| (line_no, Vec::new()));
        let mut offset = 0;
        for piece in body.split_inclusive(char::is_whitespace) {
            let word = piece.trim_end();
            let start = offset;
            offset += piece.len();
            if word.is_empty() {
                continue;
            }
            if word.starts_with('#') {
                break;
            }
            entry.1.push((word.to_owned(), line_no, start + 1));
        }
        if continued && index + 1 < lines.len() {
            continue;
        }
        let (first_line, words) = logical.take().unwrap_or_default();
        if words.is_empty() {
            continue;
        }
        let (node_token, node_line, node_column) = &words[0];
        let node = node_token.to_lowercase();
        if !nodes.is_empty() && !nodes.contains(&node) {
            diag.error(
                Location::at(path, *node_line, *node_column),
                Some("node"),
                format!(
                    "bad node name {node_token:?}: it is not declared in ha.cf (declared: {})",
                    nodes.join(", ")
                ),
            );
        }
        if words.len() < 2 {
            diag.error(
                Location::line(path, first_line),
                Some(node_token),
                "a group needs at least one resource after the node name",
            );
            continue;
        }
        let mut resources = Vec::new();
        for (token, line, column) in &words[1..] {
            match parse_resource_token(token) {
                Ok(resource) => {
                    if !ids.insert(resource.id.clone()) {
                        diag.error(
                            Location::at(path, *line, *column),
                            Some(token),
                            "this resource appears twice; a resource can be in one group only",
                        );
                    }
                    resources.push(resource);
                }
                Err(message) => diag.error(Location::at(path, *line, *column), Some(token), message),
            }
        }
        if let Some(first) = resources.first() {
            groups.push(ResourceGroup {
                id: first.id.clone(),
                preferred_node: node,
                resources,
            });
        }
    }
    diag.finish(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["node1".into(), "node2".into()]
    }

    fn parse(text: &str) -> Result<Vec<ResourceGroup>, ConfigError> {
        parse_haresources(Path::new("haresources"), text, &nodes()).map(|(groups, _)| groups)
    }

    #[test]
    fn long_interface_names_are_fine_for_ipaddr2_and_short_ones_for_ipaddr() {
        let groups = parse("node1 IPaddr2::10.0.0.1/24/hbrs-long-name0 10.0.0.2/24/vlan-eth0.100\n").unwrap();
        assert_eq!(groups[0].resources.len(), 2);
    }

    #[test]
    fn groups_arguments_and_ip_shorthand() {
        let groups = parse(
            "# comment\nnode1 10.0.0.170 Filesystem::/dev/sda1::/data1::ext2 httpd\n\nnode2\t135.9.216.3/28/eth0/135.9.216.12 \\\n   mysql # trailing\n",
        )
        .unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].preferred_node, "node1");
        assert_eq!(groups[0].id, "IPaddr::10.0.0.170");
        let fs = &groups[0].resources[1];
        assert_eq!(
            (fs.agent.as_str(), fs.args.clone()),
            (
                "Filesystem",
                vec!["/dev/sda1".to_string(), "/data1".into(), "ext2".into()]
            )
        );
        assert_eq!(groups[0].resources[2].agent, "httpd");
        assert_eq!(groups[1].resources[0].args, ["135.9.216.3/28/eth0/135.9.216.12"]);
        assert_eq!(groups[1].resources[1].agent, "mysql");
    }

    #[test]
    fn broken_inputs_name_line_and_column() {
        for (text, expected) in [
            (
                "node3 10.0.0.1\n",
                "haresources:1:1: node: bad node name \"node3\"",
            ),
            (
                "node1\n",
                "haresources:1: node1: a group needs at least one resource",
            ),
            (
                "node1 ../../bin/sh\n",
                "haresources:1:7: ../../bin/sh: agent name \"../../bin/sh\" may not start with '.'",
            ),
            (
                "node1 x/../../bin/sh::a\n",
                "agent name \"x/../../bin/sh\" contains '/'",
            ),
            (
                "node1 10.0.0.300\n",
                "haresources:1:7: 10.0.0.300: \"10.0.0.300\" is not a valid IPv4 address",
            ),
            (
                "node1 a\nnode2 b a\n",
                "haresources:2:9: a: this resource appears twice",
            ),
            ("node1 10.0.0.1/99\n", "is not a netmask"),
            (
                "node1 10.0.0.1/24/hbrs-long-name0\n",
                "haresources:1:7: 10.0.0.1/24/hbrs-long-name0: interface \"hbrs-long-name0\" is too long for IPaddr: its alias \"hbrs-long-name0:0\" exceeds the kernel's 15 characters",
            ),
            (
                "node1 IPaddr::10.0.0.1/24/bond0.12345678\n",
                "use IPaddr2::10.0.0.1/24/bond0.12345678, or an interface name of at most 13 characters",
            ),
            (
                "node1 10.0.0.1/24/abcdefghijklmnopq\n",
                "\"abcdefghijklmnopq\" is not an interface name (at most 15 characters)",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
