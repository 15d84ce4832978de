//! The contract every heartbeat-rs process shares.
//!
//! Daemons and tools never depend on each other; they meet here. This crate owns the well-known
//! bus names, object paths and interface names ([`names`]), the client side of every interface
//! (`#[proxy]` traits, e.g. [`master::HeartbeatProxy`]), the errors that cross the bus
//! ([`error`]), how a process finds and authorises peers on the bus ([`bus`]), and the cluster
//! configuration model with its parsers for `ha.cf`, `haresources`, `authkeys` and `ha.toml`
//! ([`config`]).

pub mod bus;
pub mod comm;
pub mod config;
#[cfg(feature = "contract")]
pub mod contract;
pub mod crmd;
pub mod daemon;
pub mod error;
pub mod ipfail;
pub mod links;
pub mod logging;
pub mod lrmd;
pub mod master;
pub mod names;
pub mod notify;
pub mod process;
pub mod realtime;
pub mod statefile;
pub mod stonith;

/// The version every daemon and tool reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The user the cluster daemons run as (Heartbeat's HA_CCMUSER).
pub const CLUSTER_USER: &str = "hacluster";

/// The group whose members may use the cluster (Heartbeat's HA_APIGROUP).
pub const CLUSTER_GROUP: &str = "haclient";
