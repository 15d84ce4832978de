//! A supervised child for tests: connects to the cluster bus the master hands it, owns a bus
//! name, appends `start PID` / `stop PID` to a ledger file, and ends as told.
//!
//! Usage: `hb-testchild --name BUS.NAME [--ledger FILE] [--exit-after-ms N] [--code N]
//! [--ignore-term] [--fork-grandchild]`

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

struct Options {
    name: Option<String>,
    ledger: Option<String>,
    exit_after: Option<Duration>,
    code: u8,
    ignore_term: bool,
    fork_grandchild: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        name: None,
        ledger: None,
        exit_after: None,
        code: 0,
        ignore_term: false,
        fork_grandchild: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--name" => options.name = Some(value()?),
            "--ledger" => options.ledger = Some(value()?),
            "--exit-after-ms" => {
                options.exit_after = Some(Duration::from_millis(
                    value()?.parse().map_err(|e| format!("--exit-after-ms: {e}"))?,
                ))
            }
            "--code" => options.code = value()?.parse().map_err(|e| format!("--code: {e}"))?,
            "--ignore-term" => options.ignore_term = true,
            "--fork-grandchild" => options.fork_grandchild = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn record(ledger: &Option<String>, event: &str) {
    if let Some(path) = ledger {
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{event} {}", std::process::id());
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("hb-testchild: {message}");
            return ExitCode::from(2);
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("hb-testchild: {error}");
            return ExitCode::from(4);
        }
    };
    if options.fork_grandchild {
        // A grandchild in the same process group that outlives nothing on its own: the master
        // must reap the whole group.
        let _ = std::process::Command::new("sleep").arg("300").spawn();
    }
    let _connection = match (&options.name, std::env::var(hbapi::names::env::BUS_ADDRESS)) {
        (Some(name), Ok(address)) => {
            let connection = match zbus::connection::Builder::address(address.as_str()).build().await {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!("hb-testchild: cannot connect to {address}: {error}");
                    return ExitCode::from(3);
                }
            };
            // The ledger line comes first: whoever sees the name owned can rely on it.
            record(&options.ledger, "start");
            if let Err(error) = connection.request_name(name.as_str()).await {
                eprintln!("hb-testchild: cannot own {name} on {address}: {error}");
                return ExitCode::from(3);
            }
            Some(connection)
        }
        (Some(_), Err(_)) => {
            eprintln!(
                "hb-testchild: no {} in the environment",
                hbapi::names::env::BUS_ADDRESS
            );
            return ExitCode::from(3);
        }
        (None, _) => {
            record(&options.ledger, "start");
            None
        }
    };
    let exit_after = async {
        match options.exit_after {
            Some(delay) => tokio::time::sleep(delay).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit_after);
    loop {
        tokio::select! {
            _ = term.recv() => {
                if options.ignore_term {
                    record(&options.ledger, "ignored-term");
                    continue;
                }
                record(&options.ledger, "stop");
                return ExitCode::SUCCESS;
            }
            _ = &mut exit_after => {
                record(&options.ledger, "exit");
                return ExitCode::from(options.code);
            }
        }
    }
}
