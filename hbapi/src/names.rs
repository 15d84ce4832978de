//! Well-known bus names, object paths and interface names.
//!
//! Every name derives from one prefix, [`PREFIX`]. `#[interface]` and `#[proxy]` attributes need
//! string literals, so those repeat the names; tests in each crate check the literals against the
//! constants here.

/// Expands to the reverse-DNS prefix of every bus name and interface, as a literal.
#[macro_export]
macro_rules! bus_prefix {
    () => {
        "org.heartbeatrs"
    };
}

/// Expands to the object-path form of [`bus_prefix!`], as a literal.
#[macro_export]
macro_rules! path_prefix {
    () => {
        "/org/heartbeatrs"
    };
}

/// The reverse-DNS prefix of every name this suite owns on the bus.
pub const PREFIX: &str = bus_prefix!();

/// The master process, `heartbeat`: supervises the daemons and respawn lines.
pub mod master {
    /// Well-known bus name of the master.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Heartbeat");
    /// Object path of the master's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Heartbeat");
    /// Versioned interface name of the master.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Heartbeat1");
}

/// The messaging-layer daemon `hbcomm`.
pub mod comm {
    /// Well-known bus name of hbcomm.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Comm");
    /// Object path of hbcomm's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Comm");
    /// Versioned interface name of hbcomm.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Comm1");
}

/// The resource manager `crmd`.
pub mod crmd {
    /// Well-known bus name of crmd.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Crmd");
    /// Object path of crmd's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Crmd");
    /// Versioned interface name of crmd.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Crmd1");
}

/// The local resource executor `lrmd`.
pub mod lrmd {
    /// Well-known bus name of lrmd.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Lrmd");
    /// Object path of lrmd's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Lrmd");
    /// Versioned interface name of lrmd.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Lrmd1");
}

/// The fencing daemon `stonithd`.
pub mod stonithd {
    /// Well-known bus name of stonithd.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Stonith");
    /// Object path of stonithd's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Stonith");
    /// Versioned interface name of stonithd.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Stonith1");
}

/// The ping-node plugin `ipfail`.
pub mod ipfail {
    /// Well-known bus name of ipfail.
    pub const BUS_NAME: &str = concat!(bus_prefix!(), ".Ipfail");
    /// Object path of ipfail's interface.
    pub const OBJECT_PATH: &str = concat!(path_prefix!(), "/Ipfail");
    /// Versioned interface name of ipfail.
    pub const INTERFACE: &str = concat!(bus_prefix!(), ".Ipfail1");
}

/// Environment variables the master hands to every child it starts.
pub mod env {
    /// The D-Bus address of the cluster bus.
    pub const BUS_ADDRESS: &str = "HB_BUS_ADDRESS";
    /// The node name (Heartbeat's own variable for it).
    pub const NODE_NAME: &str = "HA_CURHOST";
    /// The configuration directory (`/etc/ha.d` by default).
    pub const CONFIG_DIR: &str = "HB_CONFIG_DIR";
    /// The state directory (`/var/lib/heartbeat` by default).
    pub const STATE_DIR: &str = "HB_STATE_DIR";
    /// The run directory (`/run/heartbeat` by default).
    pub const RUN_DIR: &str = "HB_RUN_DIR";
    /// Heartbeat's debug level variable, set when ha.cf says `debug N` with N > 0.
    pub const DEBUG: &str = "HA_debug";
    /// Where crmd writes the status file, when the master was given one (FreeHA's `-l`).
    pub const STATUS_FILE: &str = "HB_STATUS_FILE";
}

/// File names inside the run directory.
pub mod run_files {
    /// The bus address, for tools that are not children of the master.
    pub const BUS_ADDRESS: &str = "bus.address";
    /// The socket of the private bus.
    pub const BUS_SOCKET: &str = "bus.sock";
    /// The master's pid.
    pub const PID: &str = "heartbeat.pid";
    /// Every node's state, written by crmd (FreeHA's status file).
    pub const STATUS: &str = "status";
    /// How the master's last run ended: its exit status, a space, the reason (for `-k`).
    pub const LAST_STOP: &str = "last-stop";
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_carries_the_prefix() {
        for name in [
            super::master::BUS_NAME,
            super::master::INTERFACE,
            super::comm::BUS_NAME,
            super::comm::INTERFACE,
            super::crmd::INTERFACE,
            super::lrmd::INTERFACE,
            super::stonithd::INTERFACE,
            super::ipfail::INTERFACE,
        ] {
            assert!(name.starts_with(super::PREFIX), "{name}");
        }
        assert_eq!(super::master::INTERFACE, "org.heartbeatrs.Heartbeat1");
        assert_eq!(super::master::OBJECT_PATH, "/org/heartbeatrs/Heartbeat");
    }
}
