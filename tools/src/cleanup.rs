//! `hb_cleanup RESOURCE|--all [--json]`: clears failures (and blocked stops) everywhere, the
//! only way back for a group that failed on every node.

use std::process::ExitCode;

use crate::cli::CleanupArgs;
use crate::json_string;

/// Runs `hb_cleanup`.
pub async fn main(args: CleanupArgs) -> ExitCode {
    let target = if args.all {
        String::new()
    } else {
        args.resource.clone().unwrap_or_default()
    };
    let fail = |message: String| {
        if args.json {
            crate::outln!("{{\"ok\":false,\"error\":{}}}", json_string(&message));
        } else {
            eprintln!("hb_cleanup: {message}");
        }
        ExitCode::from(1)
    };
    let Some(connection) = crate::connect().await else {
        return fail("heartbeat is not running on this machine (no cluster bus)".into());
    };
    let proxy = match hbapi::crmd::CrmdProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => return fail(error.to_string()),
    };
    if let Err(error) = proxy.cleanup(&target).await {
        return fail(error.to_string());
    }
    let what = if target.is_empty() {
        "every group"
    } else {
        target.as_str()
    };
    if args.json {
        crate::outln!("{{\"ok\":true,\"cleaned\":{}}}", json_string(what));
    } else {
        crate::outln!("Cleaned up {what} on every node: it may run wherever the rules put it.");
    }
    ExitCode::SUCCESS
}
