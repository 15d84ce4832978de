//! Every configuration parser on arbitrary text: ha.cf, haresources, authkeys and ha.toml
//! must return a configuration or errors naming file, line and field — never panic. Seeded
//! with the samples in etc/ (`seeds/config`).
//!
//! Run: `cd hbapi/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run config seeds/config`
#![no_main]

use std::path::Path;

use hbapi::config::{parse_authkeys, parse_ha_cf, parse_haresources, parse_toml, AuthKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_ha_cf(Path::new("ha.cf"), text);
    let nodes = vec!["alpha".to_owned(), "bravo".to_owned()];
    let _ = parse_haresources(Path::new("haresources"), text, &nodes);
    let _ = parse_authkeys(Path::new("authkeys"), text);
    let keys = |_: &str| {
        let keys = AuthKeys {
            active: 1,
            keys: Default::default(),
        };
        Ok((keys, Vec::new()))
    };
    let _ = parse_toml(Path::new("ha.toml"), text, &keys);
});
