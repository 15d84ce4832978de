//! heartbeat-rs messaging layer: heartbeats on every link, membership, reliable cluster
//! messages and the bus interface to them (`hbcomm`, [`daemon`]), around pure cores
//! ([`membership`], [`reliable`], [`cadence`], [`watchdog`]) and the wire format ([`wire`]).

pub mod cadence;
pub mod daemon;
pub mod membership;
pub mod reliable;
pub mod watchdog;
pub mod wire;
