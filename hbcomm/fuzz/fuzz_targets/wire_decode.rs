//! The receive path on arbitrary bytes: framing, authentication with the reference key, and the
//! full decode of the framed body (which the daemon only reaches for authentic packets, but
//! which must be safe on anything). Seeded with real Heartbeat 3.0.6 captures (`seeds/`).
//!
//! Run: `cd hbcomm/fuzz && cargo fuzz run wire_decode seeds/wire_decode`
#![no_main]

use hbcomm::wire::{codec, Authenticator, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let key = Authenticator::new(1, hbapi::config::AuthMethod::Sha1, b"anchor-secret-0123456789");
    let _ = codec::receive(data, &key, &limits);
    if let Ok(framed) = codec::frame(data, &limits) {
        let _ = codec::decode(&framed, &limits);
    }
});
