//! Message authentication, as Heartbeat's auth plugins compute it: the token is the lower-case
//! hex of an HMAC (sha1, md5; sha256 is ours) or of a CRC-32 (crc, which has no key), and goes
//! on the wire as `N token` where N is the authkeys index.

use hmac::{KeyInit, Mac};

use hbapi::config::{AuthKeys, AuthMethod};

/// The key in force: signs what we send, and is the only one accepted (no downgrade to another
/// listed key or method).
#[derive(Clone)]
pub struct Authenticator {
    index: u8,
    method: AuthMethod,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("index", &self.index)
            .field("method", &self.method)
            .finish()
    }
}

/// Why a packet's authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The auth string is not `N hex`.
    #[error("malformed authentication string")]
    Malformed,
    /// Signed with another key index than the one in force.
    #[error("signed with key {0}, but only key {1} is accepted")]
    WrongKey(u8, u8),
    /// The token does not match.
    #[error("authentication token does not match")]
    Mismatch,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

impl Authenticator {
    /// The authenticator for the key `auth N` selects.
    pub fn from_keys(keys: &AuthKeys) -> Option<Self> {
        let key = keys.active_key()?;
        Some(Authenticator {
            index: keys.active,
            method: key.method,
            secret: key.secret.as_bytes().to_vec(),
        })
    }

    /// An authenticator for one key.
    pub fn new(index: u8, method: AuthMethod, secret: &[u8]) -> Self {
        Authenticator {
            index,
            method,
            secret: secret.to_vec(),
        }
    }

    /// The method in force.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    fn digest(&self, data: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self.method {
            AuthMethod::Sha1 => mac::<hmac::Hmac<sha1::Sha1>>(&self.secret, data),
            AuthMethod::Md5 => mac::<hmac::Hmac<md5::Md5>>(&self.secret, data),
            AuthMethod::Sha256 => mac::<hmac::Hmac<sha2::Sha256>>(&self.secret, data),
            AuthMethod::Crc => crc32fast::hash(data).to_be_bytes().to_vec(),
        }
    }

    /// `N token` for `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        let digest = self.digest(data);
        match self.method {
            // Heartbeat prints the CRC with %lx: no leading zeros.
            AuthMethod::Crc => format!(
                "{} {:x}",
                self.index,
                u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
            ),
            _ => format!("{} {}", self.index, hex(&digest)),
        }
    }

    /// Checks `auth` (`N token`) against `data`, in constant time for the token.
    pub fn verify(&self, data: &[u8], auth: &[u8]) -> Result<(), AuthError> {
        let text = auth.strip_suffix(b"\n").unwrap_or(auth);
        let space = text.iter().position(|&b| b == b' ').ok_or(AuthError::Malformed)?;
        let index: u8 = std::str::from_utf8(&text[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(AuthError::Malformed)?;
        if index != self.index {
            return Err(AuthError::WrongKey(index, self.index));
        }
        let token = &text[space + 1..];
        if self.method == AuthMethod::Crc {
            let expected = self.sign(data);
            let expected = expected.as_bytes().get(space + 1..).unwrap_or_default();
            return if constant_time_eq(expected, token) {
                Ok(())
            } else {
                Err(AuthError::Mismatch)
            };
        }
        let token = unhex(token).ok_or(AuthError::Malformed)?;
        let expected = self.digest(data);
        if constant_time_eq(&expected, &token) {
            Ok(())
        } else {
            Err(AuthError::Mismatch)
        }
    }
}

/// Compares without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
