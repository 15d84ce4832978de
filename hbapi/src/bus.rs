//! Finding the cluster bus and authorising callers on it.

use std::path::Path;
use std::time::Duration;

use zbus::message::Header;
use zbus::{connection, Connection};

use crate::error::HbError;
use crate::names;

/// How long a method call may wait for its reply. A bus drops calls to names nobody owns
/// without answering, so every client sets one.
pub const METHOD_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster bus address for a process: `HB_BUS_ADDRESS` when the master started it, else
/// what the master wrote in `run_dir`.
pub fn find_address(run_dir: &Path) -> Option<String> {
    if let Ok(address) = std::env::var(names::env::BUS_ADDRESS) {
        if !address.is_empty() {
            return Some(address);
        }
    }
    std::fs::read_to_string(run_dir.join(names::run_files::BUS_ADDRESS))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|address| !address.is_empty())
}

/// Connects to `address` with [`METHOD_TIMEOUT`].
pub async fn connect(address: &str) -> zbus::Result<Connection> {
    connection::Builder::address(address)
        .method_timeout(METHOD_TIMEOUT)
        .build()
        .await
}

/// Callers' uids already learnt, by (our unique name, their unique name). A unique name is
/// never given to another connection during a bus's life, so an answer stays true; asking the
/// bus once per caller instead of once per call saves a round trip on every operation.
static CALLER_UIDS: std::sync::Mutex<Option<std::collections::HashMap<(String, String), u32>>> =
    std::sync::Mutex::new(None);
/// Callers remembered before the cache starts over.
const CALLER_CACHE_SIZE: usize = 1024;

/// The uid of the process that sent `header`'s message, as the bus daemon vouches for it.
pub async fn caller_uid(connection: &Connection, header: &Header<'_>) -> Result<u32, HbError> {
    let sender = header
        .sender()
        .ok_or_else(|| HbError::AccessDenied("message has no sender".into()))?;
    let key = (
        connection
            .unique_name()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        sender.to_string(),
    );
    if let Some(uid) = CALLER_UIDS
        .lock()
        .ok()
        .and_then(|cache| cache.as_ref()?.get(&key).copied())
    {
        return Ok(uid);
    }
    let dbus = zbus::fdo::DBusProxy::new(connection).await?;
    let uid = dbus
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|error| HbError::AccessDenied(format!("cannot learn the caller's uid: {error}")))?;
    if let Ok(mut cache) = CALLER_UIDS.lock() {
        let cache = cache.get_or_insert_with(Default::default);
        if cache.len() >= CALLER_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, uid);
    }
    Ok(uid)
}

/// Who may call methods that change something: root, the uid the daemon runs as, and the
/// cluster user (`hacluster`) when it exists. Everyone else is refused, including when the
/// uid cannot be learnt.
pub async fn authorise_operator(connection: &Connection, header: &Header<'_>) -> Result<u32, HbError> {
    let uid = caller_uid(connection, header).await?;
    if is_operator(uid) {
        Ok(uid)
    } else {
        Err(HbError::AccessDenied(format!(
            "uid {uid} may not do this: only root, the cluster user and the daemon's own user may"
        )))
    }
}

/// Whether `uid` is one of the operators (see [`authorise_operator`]).
pub fn is_operator(uid: u32) -> bool {
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    matches!(
        nix::unistd::User::from_name(crate::CLUSTER_USER),
        Ok(Some(user)) if user.uid.as_raw() == uid
    )
}

/// Waits until `name` has an owner on the bus (the master starts the daemons together), at
/// most one method timeout.
pub async fn wait_for_name(connection: &zbus::Connection, name: &str) {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(connection).await else {
        return;
    };
    let Ok(well_known) = zbus::names::BusName::try_from(name) else {
        return;
    };
    let Ok(mut changes) = dbus.receive_name_owner_changed_with_args(&[(0, name)]).await else {
        return;
    };
    if dbus.name_has_owner(well_known).await.unwrap_or(false) {
        return;
    }
    let _ = tokio::time::timeout(METHOD_TIMEOUT, futures_util::StreamExt::next(&mut changes)).await;
}
