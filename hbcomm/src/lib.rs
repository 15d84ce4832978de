//! heartbeat-rs messaging layer and the master process.
//!
//! [`master`] is the `heartbeat` program: configuration, the bus, supervision.

pub mod cadence;
pub mod daemon;
pub mod master;
pub mod membership;
pub mod reliable;
pub mod watchdog;
pub mod wire;
