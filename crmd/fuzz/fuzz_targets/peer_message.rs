//! What another node's crmd (or a Heartbeat 3.0.6 node) sends: a message type and its fields,
//! as hbcomm hands them over after authentication. The input is read as a first line (the
//! type) and `name=value` lines. Whatever they hold, both decoders answer without panicking,
//! and what crmd's decoder accepts encodes back to what decodes the same.
#![no_main]

use std::collections::HashMap;

use crmd::message::PeerMessage;
use crmd::v1::V1Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let msg_type = lines.next().unwrap_or_default();
    let body: HashMap<String, String> = lines
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    if let Ok(message) = PeerMessage::decode(&body) {
        let again = PeerMessage::decode(&message.encode()).expect("an accepted message re-encodes");
        assert_eq!(again, message);
    }
    let _ = V1Message::decode(msg_type, &body);
});
