//! The arguments of the bus methods that reach parsers — lrmd's `Execute` (resource id, agent,
//! action, parameters), stonithd's `Fence` and crmd's `Standby`/`Move` (node names), and
//! Heartbeat resource tokens. The input is split at NUL bytes into fields. Whatever a caller
//! sends: no panic, and when lrmd accepts a request the program it would run lies inside the
//! agent directories and every parameter reaches the agent as a well-formed name.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use hbapi::lrmd::AgentId;
use libfuzzer_sys::fuzz_target;
use lrmd::agent::{self, AgentDirs};

/// Agent directories with one agent of each class, made once.
fn dirs() -> &'static (tempfile::TempDir, AgentDirs) {
    static DIRS: OnceLock<(tempfile::TempDir, AgentDirs)> = OnceLock::new();
    DIRS.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = AgentDirs {
            config_dir: root.path().join("ha.d"),
            ocf_root: root.path().join("ocf"),
            init_dir: root.path().join("init.d"),
            rsc_tmp: root.path().join("rsc_tmp"),
            freeha_bindir: root.path().join("freeha"),
        };
        for program in [
            dirs.config_dir.join("resource.d/IPaddr"),
            dirs.ocf_root.join("resource.d/heartbeat/Dummy"),
            dirs.init_dir.join("apache2"),
            dirs.freeha_bindir.join("starthasrv"),
        ] {
            std::fs::create_dir_all(program.parent().expect("parent")).expect("mkdir");
            std::fs::write(&program, "#!/bin/sh\nexit 0\n").expect("agent");
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        (root, dirs)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('\0').collect();
    let field = |index: usize| fields.get(index).copied().unwrap_or_default();
    let (root, dirs) = dirs();
    let resource = field(0);
    let agent = AgentId {
        class: field(1).to_owned(),
        provider: field(2).to_owned(),
        agent: field(3).to_owned(),
    };
    let action = field(4);
    let params: HashMap<String, String> = fields
        .iter()
        .skip(5)
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let id_ok = lrmd::executor::check_resource_id(resource).is_ok();
    if let Ok(invocation) = agent::invocation(resource, &agent, action, &params, 0, 1000, dirs) {
        if let Some(job) = invocation.job {
            let program: PathBuf = job.program.canonicalize().unwrap_or(job.program.clone());
            assert!(
                program.starts_with(root.path().canonicalize().expect("root")),
                "{} escapes the agent directories",
                job.program.display()
            );
            for (name, _) in &job.env {
                assert!(!name.is_empty() && !name.contains('=') && !name.contains('\0'), "{name:?}");
            }
        }
    }
    let _ = id_ok;
    for node in &fields {
        if let Ok(name) = hbapi::config::check_node_name(node) {
            assert!(!name.is_empty() && !name.contains(char::is_whitespace), "{name:?}");
        }
        let _ = hbapi::config::parse_resource_token(node);
        let _ = hbapi::config::check_agent_name(node);
    }
});
