//! `hb_cleanup RESOURCE|--all [--json]`: forget failures everywhere.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    hb_tools::cleanup::main(hb_tools::cli::CleanupArgs::parse()).await
}
