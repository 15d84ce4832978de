//! Heartbeat 3.0.6's two wire forms, and the receive path in the order that keeps a forged or
//! broken packet from costing more than a bounded scan:
//!
//! 1. [`frame`]: a bounded framing check — size limit, field count limit, every length checked
//!    against what remains before it is used — that finds the signed bytes and the auth string
//!    without decoding any field;
//! 2. [`Authenticator::verify`](super::auth::Authenticator::verify) on those bytes;
//! 3. [`decode`]: the full decode, only of authentic packets.
//!
//! Netstring form (what Heartbeat sends whenever a message has a binary field, i.e. always):
//! `###\n` then `LEN:(TYPE)name=value,` per field, `%%%\n`, then the auth netstring
//! `LEN:N token,` whose HMAC covers everything from `###\n` through `%%%\n`.
//! Classic form: `>>>\n`, one `name=value\n` line per field (`(1)name=base64` for binary
//! fields), the field `auth=N token` whose HMAC covers the other lines, then `<<<\n`.

use base64::Engine;

use super::auth::{AuthError, Authenticator};
use super::message::{Message, Value};

const NETSTRING_START: &[u8] = b"###\n";
const NETSTRING_END: &[u8] = b"%%%\n";
const CLASSIC_START: &[u8] = b">>>\n";
const CLASSIC_END: &[u8] = b"<<<\n";
const AUTH_FIELD: &str = "auth";

/// Bounds applied before anything in a packet is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted (a UDP datagram's payload at most).
    pub max_packet: usize,
    /// Most fields in one message (nested messages included).
    pub max_fields: usize,
    /// Deepest nesting of struct fields.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Heartbeat's own messages stay far below this (a heartbeat is about 310 bytes); a
            // datagram near UDP's 65,507-byte maximum is not one of ours.
            max_packet: 60_000,
            max_fields: 256,
            max_depth: 4,
        }
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`Limits::max_packet`].
    #[error("packet of {0} bytes is over the size limit")]
    TooLarge(usize),
    /// Neither `###\n` nor `>>>\n`.
    #[error("not a Heartbeat message (no ### or >>> header)")]
    NoHeader,
    /// Lengths or delimiters do not add up.
    #[error("bad framing at byte {offset}: {what}")]
    Framing {
        /// Where.
        offset: usize,
        /// What was expected.
        what: &'static str,
    },
    /// More fields than [`Limits::max_fields`].
    #[error("more than {0} fields")]
    TooManyFields(usize),
    /// No authentication at all.
    #[error("no authentication")]
    NoAuth,
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A field could not be decoded.
    #[error("bad field: {0}")]
    Field(String),
}

/// Which wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `###` … `%%%`.
    Netstring,
    /// `>>>` … `<<<`.
    Classic,
}

/// A packet whose framing checked out, not yet authenticated or decoded.
#[derive(Debug, Clone, Copy)]
pub struct Framed<'a> {
    /// The form.
    pub format: Format,
    /// The bytes the authentication covers.
    pub signed: &'a [u8],
    /// The auth string (`N token`).
    pub auth: &'a [u8],
    /// The fields region.
    body: &'a [u8],
}

fn framing(offset: usize, what: &'static str) -> WireError {
    WireError::Framing { offset, what }
}

/// Reads `LEN:` at `pos`; returns (payload start, payload end) with the trailing `,` checked.
fn netstring_at(packet: &[u8], pos: usize) -> Result<(usize, usize), WireError> {
    let mut cursor = pos;
    let mut length: usize = 0;
    let mut digits = 0;
    while let Some(&byte) = packet.get(cursor) {
        if byte == b':' {
            break;
        }
        if !byte.is_ascii_digit() || digits >= 6 {
            return Err(framing(cursor, "a netstring length"));
        }
        length = length * 10 + usize::from(byte - b'0');
        digits += 1;
        cursor += 1;
    }
    if digits == 0 || packet.get(cursor) != Some(&b':') {
        return Err(framing(cursor, "a netstring length followed by ':'"));
    }
    let start = cursor + 1;
    let end = start
        .checked_add(length)
        .ok_or(framing(start, "a length that fits"))?;
    if end >= packet.len() {
        return Err(framing(start, "a netstring that ends inside the packet"));
    }
    if packet[end] != b',' {
        return Err(framing(end, "',' after a netstring"));
    }
    Ok((start, end))
}

/// Step 1 of the receive path: checks the framing within `limits`.
pub fn frame<'a>(packet: &'a [u8], limits: &Limits) -> Result<Framed<'a>, WireError> {
    if packet.len() > limits.max_packet {
        return Err(WireError::TooLarge(packet.len()));
    }
    if packet.starts_with(NETSTRING_START) {
        let mut pos = NETSTRING_START.len();
        let mut fields = 0;
        while !packet[pos..].starts_with(NETSTRING_END) {
            let (_, end) = netstring_at(packet, pos)?;
            fields += 1;
            if fields > limits.max_fields {
                return Err(WireError::TooManyFields(limits.max_fields));
            }
            pos = end + 1;
            if pos >= packet.len() {
                return Err(framing(pos, "%%% after the fields"));
            }
        }
        let body = &packet[NETSTRING_START.len()..pos];
        let signed_end = pos + NETSTRING_END.len();
        if signed_end == packet.len() {
            return Err(WireError::NoAuth);
        }
        let (auth_start, auth_end) = netstring_at(packet, signed_end)?;
        if auth_end + 1 != packet.len() {
            return Err(framing(
                auth_end + 1,
                "the end of the packet after the auth netstring",
            ));
        }
        return Ok(Framed {
            format: Format::Netstring,
            signed: &packet[..signed_end],
            auth: &packet[auth_start..auth_end],
            body,
        });
    }
    if packet.starts_with(CLASSIC_START) {
        // Heartbeat may send a terminating NUL.
        let trimmed = packet.strip_suffix(b"\0").unwrap_or(packet);
        let Some(end) = trimmed
            .len()
            .checked_sub(CLASSIC_END.len())
            .filter(|&end| trimmed[end..] == *CLASSIC_END)
        else {
            return Err(framing(trimmed.len(), "<<< at the end"));
        };
        let body = &trimmed[CLASSIC_START.len()..end];
        let lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        if lines > limits.max_fields {
            return Err(WireError::TooManyFields(limits.max_fields));
        }
        // The auth line must be the last field; what it signs is every line before it.
        let auth_prefix = b"auth=";
        let last_line_start = body[..body.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let last_line = &body[last_line_start..];
        if !last_line.starts_with(auth_prefix) {
            return Err(WireError::NoAuth);
        }
        let auth = last_line[auth_prefix.len()..]
            .strip_suffix(b"\n")
            .unwrap_or(&last_line[auth_prefix.len()..]);
        return Ok(Framed {
            format: Format::Classic,
            signed: &body[..last_line_start],
            auth,
            body,
        });
    }
    Err(WireError::NoHeader)
}

fn text(bytes: &[u8], what: &str) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Field(format!("{what} is not UTF-8")))
}

fn decode_netstring_fields(body: &[u8], limits: &Limits, depth: usize) -> Result<Message, WireError> {
    let mut message = Message::new();
    let mut pos = 0;
    while pos < body.len() {
        let (start, end) = netstring_at(body, pos)?;
        let payload = &body[start..end];
        let (code, rest) = match payload {
            [b'(', code, b')', rest @ ..] if code.is_ascii_digit() => (code - b'0', rest),
            _ => return Err(WireError::Field("expected (TYPE)name=value".into())),
        };
        let equals = rest
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| WireError::Field("no '='".into()))?;
        let name = text(&rest[..equals], "a field name")?;
        let raw = &rest[equals + 1..];
        let value = match code {
            0 => Value::Str(text(raw, "a string field")?),
            1 => Value::Bin(raw.to_vec()),
            2 => {
                if depth >= limits.max_depth {
                    return Err(WireError::Field("nested too deep".into()));
                }
                let inner = raw
                    .strip_prefix(NETSTRING_START)
                    .and_then(|r| r.strip_suffix(NETSTRING_END))
                    .ok_or_else(|| WireError::Field("struct field is not a netstring message".into()))?;
                Value::Struct(Box::new(decode_netstring_fields(inner, limits, depth + 1)?))
            }
            other => {
                return Err(WireError::Field(format!(
                    "unsupported field type {other} for {name}"
                )))
            }
        };
        message.fields.push((name, value));
        pos = end + 1;
    }
    Ok(message)
}

/// Step 3 of the receive path: decodes an authenticated packet's fields.
pub fn decode(framed: &Framed<'_>, limits: &Limits) -> Result<Message, WireError> {
    match framed.format {
        Format::Netstring => decode_netstring_fields(framed.body, limits, 0),
        Format::Classic => {
            let mut message = Message::new();
            for line in framed.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let equals = line
                    .iter()
                    .position(|&b| b == b'=')
                    .ok_or_else(|| WireError::Field("no '='".into()))?;
                let (name, raw) = (&line[..equals], &line[equals + 1..]);
                let value = match name {
                    [b'(', b'1', b')', name @ ..] => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(raw)
                            .map_err(|_| WireError::Field("binary field is not base64".into()))?;
                        (text(name, "a field name")?, Value::Bin(bytes))
                    }
                    [b'(', ..] => {
                        return Err(WireError::Field("unsupported typed field in classic form".into()))
                    }
                    _ => (
                        text(name, "a field name")?,
                        Value::Str(text(raw, "a string field")?),
                    ),
                };
                message.fields.push(value);
            }
            Ok(message)
        }
    }
}

/// The whole receive path: frame, authenticate, decode.
pub fn receive(packet: &[u8], auth: &Authenticator, limits: &Limits) -> Result<(Message, Format), WireError> {
    let framed = frame(packet, limits)?;
    auth.verify(framed.signed, framed.auth)?;
    Ok((decode(&framed, limits)?, framed.format))
}

/// The classic string of `message` without head or `auth` field: what Heartbeat's `auth`
/// field signs.
pub fn classic_signed_text(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in &message.fields {
        if name == AUTH_FIELD {
            continue;
        }
        match value {
            Value::Str(s) => {
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bin(b) => {
                out.extend_from_slice(b"(1)");
                out.extend_from_slice(name.as_bytes());
                out.push(b'=');
                out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes());
            }
            Value::Struct(_) => continue,
        }
        out.push(b'\n');
    }
    out
}

fn encode_netstring_fields(message: &Message, out: &mut Vec<u8>) {
    for (name, value) in &message.fields {
        encode_netstring_field(name, value, out);
    }
}

/// One `LEN:(T)name=value,` field, written straight into `out`.
fn encode_netstring_field(name: &str, value: &Value, out: &mut Vec<u8>) {
    use std::io::Write;
    let head = 3 + name.len() + 1;
    let nested;
    let body: &[u8] = match value {
        Value::Str(text) => text.as_bytes(),
        Value::Bin(bytes) => bytes,
        Value::Struct(inner) => {
            let mut buffer = NETSTRING_START.to_vec();
            encode_netstring_fields(inner, &mut buffer);
            buffer.extend_from_slice(NETSTRING_END);
            nested = buffer;
            &nested
        }
    };
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}:({})", head + body.len(), value.type_code());
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(body);
    out.push(b',');
}

/// Encodes `message` in `format`, signed by `auth`. As Heartbeat 3.0.6 does, the netstring
/// form also carries the classic `auth` field inside, so that both kinds of receiver accept it.
pub fn encode(message: &Message, format: Format, auth: &Authenticator) -> Vec<u8> {
    // Any `auth` field of `message` is replaced by the one signing the rest, put last.
    let inner_auth = auth.sign(&classic_signed_text(message));
    let mut out = Vec::with_capacity(512);
    match format {
        Format::Netstring => {
            out.extend_from_slice(NETSTRING_START);
            for (name, value) in &message.fields {
                if name != AUTH_FIELD {
                    encode_netstring_field(name, value, &mut out);
                }
            }
            encode_netstring_field(AUTH_FIELD, &Value::Str(inner_auth), &mut out);
            out.extend_from_slice(NETSTRING_END);
            let trailer = auth.sign(&out);
            out.extend_from_slice(trailer.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(trailer.as_bytes());
            out.push(b',');
        }
        Format::Classic => {
            out.extend_from_slice(CLASSIC_START);
            out.extend_from_slice(&classic_signed_text(message));
            out.extend_from_slice(b"auth=");
            out.extend_from_slice(inner_auth.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(CLASSIC_END);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbapi::config::AuthMethod;

    /// The first `t=status` packet of ../shared/reference/heartbeat-3.0.6/wire-sample.txt.
    pub(crate) const STATUS: &[u8] = b"###\n11:(0)t=status,12:(0)st=active,9:(0)dt=3e8,13:(0)protocol=1,12:(0)src=alpha,27:(1)srcuuid=PSj\xf5y\xd6L\xfe\xab\xcc.\x9f'b\xb2\x80,10:(0)seq=198,14:(0)hg=6b038289,14:(0)ts=6b0382d7,30:(0)ld=0.49 0.75 0.96 1/146 149,8:(0)ttl=3,50:(0)auth=1 1d7e55fbe69bceb8ec98ad56dee0e34b749afdaa,%%%\n42:1 504809bfcfb32b3bd512163c0d4c75dcc62b10e0,";
    /// The first `t=NS_ackmsg` packet of the same capture.
    pub(crate) const ACK: &[u8] = b"###\n14:(0)t=NS_ackmsg,13:(0)dest=bravo,13:(0)ackseq=199,28:(1)destuuid=\xdd\x97\xfcI\x9c&D\x1e\x865\xea\xb4\xe0\xc6\xc4\x92,12:(0)src=alpha,27:(1)srcuuid=PSj\xf5y\xd6L\xfe\xab\xcc.\x9f'b\xb2\x80,14:(0)hg=6b038289,14:(0)ts=6b0382d8,8:(0)ttl=3,50:(0)auth=1 5f4da1528de343a680e0ffd3a5ec84de9a748a92,%%%\n42:1 a0ca9fae180a658c35a7cc126896794f2c0c2d35,";

    pub(crate) fn reference_key() -> Authenticator {
        Authenticator::new(1, AuthMethod::Sha1, b"anchor-secret-0123456789")
    }

    #[test]
    fn heartbeat_3_0_6_captures_authenticate_and_decode() {
        let limits = Limits::default();
        let (status, format) = receive(STATUS, &reference_key(), &limits).unwrap();
        assert_eq!(format, Format::Netstring);
        assert_eq!(status.get("t"), Some("status"));
        assert_eq!(status.get("st"), Some("active"));
        assert_eq!(status.get("src"), Some("alpha"));
        assert_eq!(status.get("seq"), Some("198"));
        assert_eq!(status.get("ld"), Some("0.49 0.75 0.96 1/146 149"));
        assert_eq!(status.get_binary("srcuuid").map(|u| u.len()), Some(16));
        let (ack, _) = receive(ACK, &reference_key(), &limits).unwrap();
        assert_eq!(ack.get("t"), Some("NS_ackmsg"));
        assert_eq!(ack.get("ackseq"), Some("199"));
        assert_eq!(ack.get("dest"), Some("bravo"));
    }

    #[test]
    fn the_inner_auth_field_is_heartbeats_classic_hmac() {
        let framed = frame(STATUS, &Limits::default()).unwrap();
        let message = decode(&framed, &Limits::default()).unwrap();
        let inner = message.get("auth").unwrap();
        assert_eq!(inner, reference_key().sign(&classic_signed_text(&message)));
    }

    #[test]
    fn our_encoding_of_a_decoded_capture_is_byte_identical() {
        for capture in [STATUS, ACK] {
            let (message, _) = receive(capture, &reference_key(), &Limits::default()).unwrap();
            assert_eq!(encode(&message, Format::Netstring, &reference_key()), capture);
        }
    }

    #[test]
    fn classic_form_round_trips_with_binary_fields() {
        let message = Message::new()
            .with("t", "status")
            .with("src", "alpha")
            .with_binary("srcuuid", &[0, 1, 254, 255]);
        let packet = encode(&message, Format::Classic, &reference_key());
        assert!(packet.starts_with(b">>>\nt=status\nsrc=alpha\n(1)srcuuid=AAH+/w==\nauth=1 "));
        let (decoded, format) = receive(&packet, &reference_key(), &Limits::default()).unwrap();
        assert_eq!(format, Format::Classic);
        assert_eq!(decoded.get_binary("srcuuid"), Some(&[0u8, 1, 254, 255][..]));
    }

    #[test]
    fn every_method_signs_and_verifies() {
        for method in [
            AuthMethod::Sha1,
            AuthMethod::Md5,
            AuthMethod::Sha256,
            AuthMethod::Crc,
        ] {
            let key = Authenticator::new(3, method, b"k");
            let packet = encode(&Message::new().with("t", "x"), Format::Netstring, &key);
            assert!(receive(&packet, &key, &Limits::default()).is_ok(), "{method:?}");
            let other = Authenticator::new(3, method, b"other");
            if method != AuthMethod::Crc {
                assert_eq!(
                    receive(&packet, &other, &Limits::default()).unwrap_err(),
                    WireError::Auth(AuthError::Mismatch)
                );
            }
        }
    }

    #[test]
    fn no_downgrade_to_another_key_index() {
        let sha1_key2 = Authenticator::new(2, AuthMethod::Sha1, b"anchor-secret-0123456789");
        assert_eq!(
            receive(STATUS, &sha1_key2, &Limits::default()).unwrap_err(),
            WireError::Auth(AuthError::WrongKey(1, 2))
        );
    }

    #[test]
    fn forged_truncated_and_oversized_packets_are_refused() {
        let limits = Limits::default();
        let mut forged = STATUS.to_vec();
        let at = forged.windows(3).position(|w| w == b"198").unwrap();
        forged[at] = b'9';
        assert_eq!(
            receive(&forged, &reference_key(), &limits).unwrap_err(),
            WireError::Auth(AuthError::Mismatch)
        );
        for cut in 0..STATUS.len() {
            assert!(
                receive(&STATUS[..cut], &reference_key(), &limits).is_err(),
                "truncated at {cut}"
            );
        }
        let huge = vec![b'#'; limits.max_packet + 1];
        assert_eq!(
            receive(&huge, &reference_key(), &limits).unwrap_err(),
            WireError::TooLarge(limits.max_packet + 1)
        );
        let mut many = b"###\n".to_vec();
        for _ in 0..=limits.max_fields {
            many.extend_from_slice(b"5:(0)a=,");
        }
        many.extend_from_slice(b"%%%\n4:1 00,");
        assert_eq!(
            receive(&many, &reference_key(), &limits).unwrap_err(),
            WireError::TooManyFields(limits.max_fields)
        );
        let lying_length = b"###\n999999:(0)t=x,%%%\n4:1 00,";
        assert!(matches!(
            frame(lying_length, &limits),
            Err(WireError::Framing { .. })
        ));
    }
}
