//! `hb_mon [-1] [--json [--live]]`: the live cluster monitor.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    hb_tools::monitor::main(hb_tools::monitor::Args::parse()).await
}
