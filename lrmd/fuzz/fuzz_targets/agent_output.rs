//! What agents print, read by lrmd and stonithd: a heartbeat-class status text, a fence
//! agent's meta-data, a plugin's host list and `-p` parameter text. Whatever the text, the
//! readers answer without panicking, and lrmd's result is a code it knows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lrmd::agent::{map_result, Class};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for class in [Class::Heartbeat, Class::Lsb, Class::Ocf, Class::FreeHa] {
        for action in ["start", "stop", "monitor", "status"] {
            for exit in [0, 1, 3, 7, 8, 127, 255, -1] {
                let rc = map_result(class, action, exit, &text);
                assert!((0..=9).contains(&rc) || rc == 190 || rc == 191, "{rc}");
            }
        }
    }
    let names = stonithd::plugin::fence_parameters(&text);
    let hosts = stonithd::plugin::split_hosts(&text);
    assert!(hosts.iter().all(|h| !h.is_empty()));
    let _ = stonithd::plugin::parse_params(&text, &names);
    let _ = stonithd::plugin::parse_params(&text, &hosts);
});
