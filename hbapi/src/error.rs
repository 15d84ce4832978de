//! Errors that cross the bus.

use zbus::DBusError;

/// Errors every heartbeat-rs interface may return. Their D-Bus names are
/// `org.heartbeatrs.Error.<Variant>`.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.heartbeatrs.Error")]
pub enum HbError {
    /// A transport error of zbus itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's uid may not call this method.
    AccessDenied(String),
    /// No such child, resource, node or group.
    NotFound(String),
    /// The argument is not acceptable.
    InvalidArgument(String),
    /// The configuration could not be (re)loaded.
    BadConfig(String),
    /// The operation failed.
    Failed(String),
}
