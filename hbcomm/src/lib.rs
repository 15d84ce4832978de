//! heartbeat-rs messaging layer: heartbeats on every link, membership, reliable cluster
//! messages and the bus interface to them (`hbcomm`, [`daemon`]), around a sans-I/O node
//! ([`node`]) built of pure parts ([`membership`], [`reliable`], [`replay`], [`rejects`],
//! [`cadence`], [`watchdog`]) and the wire format ([`wire`]).

pub mod cadence;
pub mod cpg_view;
pub mod daemon;
pub mod membership;
pub mod node;
pub mod rejects;
pub mod reliable;
pub mod replay;
pub mod watchdog;
pub mod wire;
