//! What agents print, read by lrmd and the fencing library: a heartbeat-class status text, a fence
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
    let names = fencing::fence_parameters(&text);
    let hosts = fencing::split_hosts(&text);
    assert!(hosts.iter().all(|h| !h.is_empty()));
    let _ = fencing::parse_params(&text, &names);
    let _ = fencing::parse_params(&text, &hosts);
});
