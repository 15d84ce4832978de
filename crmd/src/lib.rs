//! `crmd`: the cluster resource manager. [`policy`] decides where every group runs (a pure
//! function, tested with golden placement scenarios); [`partition`] is what a node knows of
//! its peers and whether it may decide (a sans-IO state machine, tested with event
//! sequences); [`message`] is the typed peer protocol; [`daemon`] carries the core's effects
//! out on the bus: this node's part through lrmd, fencing through stonithd.

pub mod daemon;
pub mod iface;
pub mod local;
pub mod message;
pub mod outbox;
pub mod partition;
pub mod policy;
pub mod v1;

use std::path::PathBuf;

use hbapi::names;

/// `crmd`'s entry point: settings from the master's environment.
pub fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h")
    {
        println!("usage: crmd\nStarted by the heartbeat master, which passes the node and its directories in the environment.");
        return ExitCode::SUCCESS;
    }
    let loaded = match hbapi::daemon::read_config("crmd") {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    hbapi::logging::init_with(
        "crmd",
        hbapi::logging::level_for_debug(loaded.config.logging.debug),
        &loaded.config.logging,
    );
    let (node, (run_dir, bus_address)) = match (hbapi::daemon::node_name("crmd"), hbapi::daemon::bus("crmd"))
    {
        (Ok(node), Ok(bus)) => (node, bus),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let status_file = std::env::var_os(names::env::STATUS_FILE)
        .map(PathBuf::from)
        .unwrap_or_else(|| run_dir.join(names::run_files::STATUS));
    hbapi::daemon::block_on("crmd", async move {
        hbapi::daemon::follow_log_level();
        let shutdown = hbapi::daemon::terminated();
        match daemon::run(
            daemon::CrmdOptions {
                node,
                bus_address,
                status_file,
            },
            loaded.config,
            shutdown,
        )
        .await
        {
            Ok(daemon::Ending::Clean) => ExitCode::SUCCESS,
            // The master (and `heartbeat -k`) must not report a clean stop.
            Ok(daemon::Ending::GroupsLeftRunning) => ExitCode::FAILURE,
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}
