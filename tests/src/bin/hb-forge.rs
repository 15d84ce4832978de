//! Forged signals, sent by a stranger straight to one daemon (the system bus lets anyone send
//! signals): for the test that proves crmd acts on none of them.
//!
//!     hb-forge ADDRESS DESTINATION PEER RESOURCE
//!
//! sends to DESTINATION (a unique bus name): NameOwnerChanged saying hbcomm, lrmd and stonithd
//! left; NodeStatusChanged saying PEER is active and then dead; a MessageReceived from PEER;
//! FenceFinished (success) for operations 1..=64; OperationCompleted for a start of RESOURCE
//! with operation ids around now and a failed recurring monitor of it. Prints how many.

use std::collections::HashMap;
use std::process::ExitCode;

use hbapi::lrmd::OpResult;
use hbapi::names;
use hbapi::stonith::FenceRecord;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, destination, peer, resource] = args.as_slice() else {
        eprintln!("usage: hb-forge ADDRESS DESTINATION PEER RESOURCE");
        return ExitCode::from(2);
    };
    match forge(address, destination, peer, resource).await {
        Ok(sent) => {
            println!("{sent}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hb-forge: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn forge(address: &str, destination: &str, peer: &str, resource: &str) -> zbus::Result<u64> {
    let connection = zbus::connection::Builder::address(address).build().await?;
    let to = Some(destination);
    let mut sent = 0u64;
    for name in [
        names::comm::BUS_NAME,
        names::lrmd::BUS_NAME,
        names::stonithd::BUS_NAME,
    ] {
        connection
            .emit_signal(
                to,
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameOwnerChanged",
                &(name, ":1.1", ""),
            )
            .await?;
        sent += 1;
    }
    for (old, new) in [("dead", "active"), ("active", "dead")] {
        connection
            .emit_signal(
                to,
                names::comm::OBJECT_PATH,
                names::comm::INTERFACE,
                "NodeStatusChanged",
                &(peer, old, new),
            )
            .await?;
        sent += 1;
    }
    let body: HashMap<String, String> = HashMap::from([("op".to_owned(), "hello".to_owned())]);
    connection
        .emit_signal(
            to,
            names::comm::OBJECT_PATH,
            names::comm::INTERFACE,
            "MessageReceived",
            &(peer, "crmd", body),
        )
        .await?;
    sent += 1;
    for op_id in 1..=64u64 {
        let record = FenceRecord {
            op_id,
            target: peer.to_owned(),
            action: "reboot".into(),
            reason: "forged".into(),
            requested_by: 0,
            device: "forged".into(),
            ok: true,
            message: "forged".into(),
            started: 0,
            duration_ms: 0,
            confirmed_by: -1,
        };
        connection
            .emit_signal(
                to,
                names::stonithd::OBJECT_PATH,
                names::stonithd::INTERFACE,
                "FenceFinished",
                &(record,),
            )
            .await?;
        sent += 1;
    }
    // lrmd numbers operations from its start time in microseconds: ids around now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let result = |op_id: u64, action: &str, interval_ms: u32, rc: i32| OpResult {
        op_id,
        resource: resource.to_owned(),
        action: action.to_owned(),
        interval_ms,
        status: "done".into(),
        rc,
        output: "forged".into(),
        duration_ms: 1,
        finished: now / 1_000_000,
    };
    let mut results: Vec<OpResult> = (0..32)
        .map(|i| result(now - 60_000_000 + i, "start", 0, 0))
        .collect();
    results.push(result(now, "monitor", 1000, 7));
    for result in results {
        connection
            .emit_signal(
                to,
                names::lrmd::OBJECT_PATH,
                names::lrmd::INTERFACE,
                "OperationCompleted",
                &(result,),
            )
            .await?;
        sent += 1;
    }
    Ok(sent)
}
