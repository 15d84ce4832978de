//! `meatclient -c NODE`: tells stonithd that an operator power-cycled NODE, releasing a
//! meatware fence that waits for it. As cluster-glue's, it asks before it confirms.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use hb_tools::cli::MeatclientArgs as Args;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.yes {
        hb_tools::out!(
            "WARNING!\n\nIf node \"{node}\" has not been manually power-cycled or disconnected from all shared resources and networks, data on shared disks may become corrupted and migrated services might not work as expected.\nPlease verify that the name or address above corresponds to the node you just rebooted.\n\nPROCEED? [yN] ",
            node = args.node
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !answer.trim().eq_ignore_ascii_case("y") {
            if !std::io::stdin().is_terminal() && answer.is_empty() {
                eprintln!("meatclient: no answer on stdin; use --yes in scripts");
            }
            hb_tools::outln!("Meatware_client: operation canceled.");
            return ExitCode::from(1);
        }
    }
    let Some(connection) = hb_tools::connect().await else {
        eprintln!("meatclient: the cluster is not running here (no cluster bus)");
        return ExitCode::from(1);
    };
    let proxy = match hbapi::stonith::StonithProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("meatclient: {error}");
            return ExitCode::from(1);
        }
    };
    match proxy.confirm_meatware(&args.node).await {
        Ok(true) => {
            hb_tools::outln!("Meatware_client: reset confirmed.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("meatclient: no meatware fence of {} is waiting", args.node);
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("meatclient: {error}");
            ExitCode::from(1)
        }
    }
}
