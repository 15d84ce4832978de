//! Waiting for crmd: group changes (its signal) and node states (its status file).

use futures_util::StreamExt;
use hbapi::crmd::{CrmdProxy, GroupChangedStream};

use crate::{Node, PATIENCE};

/// A subscription to `node`'s group changes (create it right before the action it waits for).
pub async fn changes(node: &Node) -> GroupChangedStream {
    CrmdProxy::new(&node.connection)
        .await
        .unwrap()
        .receive_group_changed()
        .await
        .unwrap()
}

/// Waits for `group` to reach `state` on the node whose stream this is.
/// (Twice the usual patience: a takeover without fencing waits out a stop timeout first.)
pub async fn wait_group(stream: &mut GroupChangedStream, group: &str, state: &str) {
    let found = tokio::time::timeout(PATIENCE * 2, async {
        while let Some(signal) = stream.next().await {
            let args = signal.args().unwrap();
            if args.group == group && args.state == state {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{group} did not become {state} within {PATIENCE:?}"
    );
}

/// Every node's state as `node`'s crmd sees it, from its status file (FreeHA's), once that
/// file says what `expected` says: lines "NODE STATE [GROUPS]".
pub async fn wait_status(node: &Node, expected: &[&str]) {
    wait_status_file(&node.run_dir.join(hbapi::names::run_files::STATUS), expected).await
}

/// Like [`wait_status`], for a status file elsewhere (the master's `-l PATH`).
pub async fn wait_status_file(path: &std::path::Path, expected: &[&str]) {
    let read = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let seen = tokio::time::timeout(PATIENCE, async {
        while read() != expected {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "status file {}: {:?}, expected {expected:?}",
        path.display(),
        read()
    );
}
