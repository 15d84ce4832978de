//! The clap definitions of the commands that have them, in the library so that their manual
//! pages and shell completions are generated from the same definitions (hb-gen-docs).

use clap::Parser;

/// Fence (power-cycle) a cluster node, or inspect fencing devices.
#[derive(Parser)]
#[command(name = "stonith", version = hbapi::VERSION, disable_help_flag = true)]
pub struct StonithArgs {
    /// List supported stonith device types.
    #[arg(short = 'L')]
    pub list_types: bool,
    /// Display detailed help with every device type's description and parameters.
    #[arg(short = 'h')]
    pub help: bool,
    /// Device type.
    #[arg(short = 't', value_name = "TYPE")]
    pub device_type: Option<String>,
    /// Print the names of the type's parameters.
    #[arg(short = 'n')]
    pub names: bool,
    /// Print the type's meta-data XML.
    #[arg(short = 'm')]
    pub meta_data: bool,
    /// Parameters, in the order -n prints them (or name=value pairs).
    #[arg(short = 'p', value_name = "PARAMS")]
    pub params: Option<String>,
    /// Parameters from a file (-p syntax, # starts a comment line).
    #[arg(short = 'F', value_name = "FILE")]
    pub params_file: Option<std::path::PathBuf>,
    /// Parameters from the environment (one variable per parameter name).
    #[arg(short = 'E')]
    pub from_env: bool,
    /// Reset, power on or power off a node.
    #[arg(short = 'T', value_name = "reset|on|off")]
    pub action: Option<String>,
    /// List the hosts the device controls.
    #[arg(short = 'l')]
    pub list_hosts: bool,
    /// Report the device's status.
    #[arg(short = 'S')]
    pub status: bool,
    /// Silent.
    #[arg(short = 's')]
    pub silent: bool,
    /// Verbose.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Debug.
    #[arg(short = 'd')]
    pub debug: bool,
    /// Repeat count (accepted for compatibility; each operation runs once).
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u32>,
    /// Print listings as JSON.
    #[arg(long)]
    pub json: bool,
    /// name=value parameters, and the node for -T.
    pub rest: Vec<String>,
}

/// Confirm a manual reset (meatware STONITH).
#[derive(Parser)]
#[command(name = "meatclient", version = hbapi::VERSION)]
pub struct MeatclientArgs {
    /// The node that was power-cycled.
    #[arg(short = 'c', value_name = "NODE")]
    pub node: String,
    /// Do not ask (for scripts that have checked already).
    #[arg(long)]
    pub yes: bool,
}

/// Forget a resource group's failures on every node, so that it may run there again
/// (Pacemaker's `crm_resource --cleanup`; Heartbeat had none).
#[derive(Parser, Debug)]
#[command(name = "hb_cleanup", version = hbapi::VERSION)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["resource", "all"]))]
pub struct CleanupArgs {
    /// A group, or a resource of one (its whole group is cleaned up).
    pub resource: Option<String>,
    /// Every group.
    #[arg(long)]
    pub all: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}
