//! The bus contract, checked without a node (feature `contract`, for the daemons' tests).
//!
//! The XML under `hbapi/interfaces/` is the source of truth: a change to an interface is made
//! there first, then in the daemon's `#[interface]` and in the `#[proxy]` here. Each daemon's
//! contract test serves its interface on a peer-to-peer connection ([`serve_p2p`]) and checks
//! both sides against the XML: what it serves, member by member ([`check_served`]), and the
//! proxy, by calling every method and receiving every signal through it ([`Calls`]) — a
//! renamed member, a changed signature or a changed reply type on either side fails there.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use zbus::object_server::Interface;
use zbus::Connection;
use zbus_xml::{ArgDirection, PropertyAccess};

/// The prefix of every error our interfaces return by name (see [`crate::error::HbError`]).
const DOMAIN_ERROR_PREFIX: &str = "org.heartbeatrs.Error.";

/// Where the checked-in interface of `interface` lives.
pub fn xml_path(interface: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interfaces")
        .join(format!("{interface}.xml"))
}

/// The checked-in definition of `interface`, as one line per member (see [`shape`]).
pub fn checked_in(interface: &str) -> Result<Vec<String>, String> {
    let path = xml_path(interface);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let node = zbus_xml::Node::try_from(text.as_str()).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = node
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == interface)
        .ok_or_else(|| format!("{}: no interface {interface}", path.display()))?;
    Ok(shape(found))
}

/// An interface as a sorted list of lines, one per member: each method with its arguments'
/// names, types and directions, each signal with its arguments, each property with its type
/// and access, and the annotations of each. Documentation is left out: it is not contract.
pub fn shape(interface: &zbus_xml::Interface<'_>) -> Vec<String> {
    fn args(list: &[zbus_xml::Arg<'_>]) -> String {
        list.iter()
            .map(|arg| {
                let direction = match arg.direction() {
                    Some(ArgDirection::In) => "in ",
                    Some(ArgDirection::Out) => "out ",
                    None => "",
                };
                format!("{direction}{} {}", arg.name().unwrap_or("_"), arg.ty())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn annotations(list: &[zbus_xml::Annotation<'_>]) -> String {
        list.iter().fold(String::new(), |mut text, a| {
            let _ = write!(text, " @{}={}", a.name(), a.value());
            text
        })
    }
    let mut lines: Vec<String> = Vec::new();
    for method in interface.methods() {
        lines.push(format!(
            "method {}({}){}",
            method.name(),
            args(method.args()),
            annotations(method.annotations())
        ));
    }
    for signal in interface.signals() {
        lines.push(format!(
            "signal {}({}){}",
            signal.name(),
            args(signal.args()),
            annotations(signal.annotations())
        ));
    }
    for property in interface.properties() {
        let access = match property.access() {
            PropertyAccess::Read => "read",
            PropertyAccess::Write => "write",
            PropertyAccess::ReadWrite => "readwrite",
        };
        lines.push(format!(
            "property {} {} {access}{}",
            property.name(),
            property.ty(),
            annotations(property.annotations())
        ));
    }
    lines.sort();
    lines
}

/// The member names of a shape (`method Fence`, `signal FenceStarted`, `property Node`).
pub fn members(shape: &[String]) -> BTreeSet<String> {
    shape
        .iter()
        .filter_map(|line| {
            let (kind, rest) = line.split_once(' ')?;
            let name = rest.split(['(', ' ']).next()?;
            Some(format!("{kind} {name}"))
        })
        .collect()
}

/// What differs between two shapes, one line per member ("" when none).
pub fn difference(served: &[String], checked_in: &[String]) -> String {
    let mut text = String::new();
    for line in checked_in.iter().filter(|line| !served.contains(line)) {
        let _ = writeln!(text, "  in the XML, not served: {line}");
    }
    for line in served.iter().filter(|line| !checked_in.contains(line)) {
        let _ = writeln!(text, "  served, not in the XML: {line}");
    }
    text
}

/// A server connection serving `interface` at `path` and a client connection to it, joined by
/// a socket pair: no bus. On such a connection no caller has a uid the bus vouches for, so
/// every method that authorises its caller refuses ([`crate::bus::caller_uid`] fails closed)
/// and does nothing — which lets the tests call every method of a daemon safely.
pub async fn serve_p2p<I: Interface>(path: &str, interface: I) -> zbus::Result<(Connection, Connection)> {
    let (server_end, client_end) = std::os::unix::net::UnixStream::pair()?;
    let server = zbus::connection::Builder::unix_stream(server_end)
        .server(zbus::Guid::generate())
        .p2p()
        .serve_at(path.to_owned(), interface)
        .build();
    let client = zbus::connection::Builder::unix_stream(client_end).p2p().build();
    tokio::try_join!(server, client)
}

/// Introspects `interface` at `path` over `client` and compares it with the checked-in XML.
pub async fn check_served(client: &Connection, path: &str, interface: &str) -> Result<(), String> {
    let introspectable = zbus::fdo::IntrospectableProxy::builder(client)
        .path(path.to_owned())
        .destination("org.heartbeatrs.Contract")
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let xml = introspectable.introspect().await.map_err(|e| e.to_string())?;
    let node = zbus_xml::Node::try_from(xml.as_str()).map_err(|e| format!("served XML: {e}"))?;
    let served = node
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == interface)
        .map(shape)
        .ok_or_else(|| format!("{interface} is not served at {path}"))?;
    let expected = checked_in(interface)?;
    let difference = difference(&served, &expected);
    if difference.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{interface}: what is served differs from {}:\n{difference}",
            xml_path(interface).display()
        ))
    }
}

/// The members a test reached through the proxy, and every disagreement it met.
#[derive(Debug, Default)]
pub struct Calls {
    reached: BTreeSet<String>,
    disagreements: Vec<String>,
}

impl Calls {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a method call or property read through the proxy (`member` as in the shape:
    /// `method Fence`, `property Node`). A reply the proxy could read, or one of our own
    /// errors, means both sides agree on the member, its arguments and its reply; an unknown
    /// member, refused arguments or an unreadable reply mean they do not.
    pub fn call<T>(&mut self, member: &str, result: zbus::Result<T>) -> Option<T> {
        self.reached.insert(member.to_owned());
        match result {
            Ok(value) => Some(value),
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().starts_with(DOMAIN_ERROR_PREFIX) => {
                None
            }
            Err(error) => {
                self.disagreements.push(format!("{member}: {error}"));
                None
            }
        }
    }

    /// Records a signal received through the proxy: its arguments as the proxy reads them.
    pub fn signal<T>(&mut self, member: &str, args: zbus::Result<T>) {
        self.reached.insert(member.to_owned());
        if let Err(error) = args {
            self.disagreements.push(format!("{member}: {error}"));
        }
    }

    /// Every member of the checked-in `interface` was reached and all agreed.
    pub fn verdict(&self, interface: &str) -> Result<(), String> {
        let expected = members(&checked_in(interface)?);
        let mut text = String::new();
        for member in expected.difference(&self.reached) {
            let _ = writeln!(text, "  never called through the proxy: {member}");
        }
        for member in self.reached.difference(&expected) {
            let _ = writeln!(text, "  called, not in the XML: {member}");
        }
        for line in &self.disagreements {
            let _ = writeln!(text, "  proxy and interface disagree: {line}");
        }
        if text.is_empty() {
            Ok(())
        } else {
            Err(format!("{interface}:\n{text}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<node><interface name="org.example.T1">
        <method name="Fence"><arg name="target" type="s" direction="in"/><arg type="t" direction="out"/></method>
        <signal name="Done"><arg name="ok" type="b"/></signal>
        <property name="Node" type="s" access="read">
          <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
        </property>
    </interface></node>"#;

    fn parse(xml: &str) -> Vec<String> {
        let node = zbus_xml::Node::try_from(xml).unwrap();
        shape(&node.interfaces()[0])
    }

    #[test]
    fn a_shape_names_every_member_with_its_types_and_nothing_of_the_docs() {
        assert_eq!(
            parse(XML),
            vec![
                "method Fence(in target s, out _ t)".to_owned(),
                "property Node s read @org.freedesktop.DBus.Property.EmitsChangedSignal=const".to_owned(),
                "signal Done(ok b)".to_owned(),
            ]
        );
        let names: Vec<String> = members(&parse(XML)).into_iter().collect();
        assert_eq!(names, ["method Fence", "property Node", "signal Done"]);
    }

    #[test]
    fn a_changed_argument_type_is_a_difference_on_both_sides() {
        let changed = parse(&XML.replace(r#"name="target" type="s""#, r#"name="target" type="u""#));
        let text = difference(&changed, &parse(XML));
        assert!(
            text.contains("in the XML, not served: method Fence(in target s, out _ t)"),
            "{text}"
        );
        assert!(
            text.contains("served, not in the XML: method Fence(in target u, out _ t)"),
            "{text}"
        );
        assert_eq!(difference(&parse(XML), &parse(XML)), "");
    }

    #[test]
    fn domain_errors_agree_and_protocol_errors_do_not() {
        let mut calls = Calls::new();
        let refused = zbus::message::Message::method_call("/", "Fence")
            .build(&())
            .unwrap();
        let domain = zbus::Error::MethodError(
            "org.heartbeatrs.Error.AccessDenied".try_into().unwrap(),
            None,
            refused.clone(),
        );
        let unknown = zbus::Error::MethodError(
            "org.freedesktop.DBus.Error.UnknownMethod".try_into().unwrap(),
            None,
            refused,
        );
        assert_eq!(calls.call::<u64>("method Fence", Err(domain)), None);
        assert!(calls.disagreements.is_empty());
        calls.call::<u64>("method Fence", Err(unknown));
        assert_eq!(calls.disagreements.len(), 1);
    }
}
