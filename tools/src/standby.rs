//! What `hb_standby` and `hb_takeover` share: Heartbeat's argument handling and the call to
//! this node's crmd.

use std::process::ExitCode;

/// Which command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Give up groups.
    Standby,
    /// Take groups.
    Takeover,
}

/// Runs `hb_standby` or `hb_takeover` with `args` (after the program name), as Heartbeat's:
/// one optional argument all|foreign|local|failback (failback means foreign), default all.
pub async fn main(which: Which, args: &[String]) -> ExitCode {
    let program = match which {
        Which::Standby => "hb_standby",
        Which::Takeover => "hb_takeover",
    };
    let usage = || {
        eprintln!("usage:\n{program} [all|foreign|local|failback]");
        ExitCode::from(1)
    };
    let mode = match args {
        [] => "all",
        [one] if one == "--help" => return usage(),
        [one] if matches!(one.as_str(), "all" | "foreign" | "local" | "failback") => one.as_str(),
        [one] => {
            eprintln!("{program}: wrong resources({one}).");
            return usage();
        }
        _ => {
            eprintln!("{program}: too many arguments");
            return usage();
        }
    };
    let mode = if mode == "failback" { "foreign" } else { mode };
    let Some(connection) = crate::connect().await else {
        eprintln!("{program}: Heartbeat is not running on this machine (no cluster bus)");
        return ExitCode::from(1);
    };
    let proxy = match hbapi::crmd::CrmdProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("{program}: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = match which {
        Which::Standby => {
            crate::outln!("Going standby [{mode}].");
            proxy.standby(mode).await
        }
        Which::Takeover => {
            crate::outln!("Taking over [{mode}].");
            proxy.takeover(mode).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::from(1)
        }
    }
}
