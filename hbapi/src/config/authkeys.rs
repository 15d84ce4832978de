//! `authkeys`: `auth N` selects the key that signs; `N method [secret]` lines list keys.

use std::collections::BTreeMap;
use std::path::Path;

use super::diag::{Collector, ConfigError, Diagnostic, Location};
use super::model::{AuthKey, AuthKeys, AuthMethod};

/// Heartbeat's MAXAUTH: key indexes are 0..=15.
pub const MAX_KEY_INDEX: u8 = 15;

/// Refuses a secrets file that group or others may read, as Heartbeat does, saying how to fix
/// it.
pub fn check_secret_file_mode(path: &Path, mode: u32) -> Result<(), ConfigError> {
    if mode & 0o077 != 0 {
        return Err(ConfigError::file(
            path,
            format!(
                "bad permissions {:04o}: the file holds secrets and must not be readable or writable by group or others; fix with: chmod 600 {}",
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads authkeys text.
pub fn parse_authkeys(path: &Path, text: &str) -> Result<(AuthKeys, Vec<Diagnostic>), ConfigError> {
    let mut diag = Collector::default();
    let mut active: Option<(u8, usize)> = None;
    let mut keys = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let fields: Vec<&str> = body.split_whitespace().collect();
        let at = Location::line(path, line);
        if fields[0] == "auth" {
            if active.is_some() {
                diag.error(
                    at,
                    Some("auth"),
                    "'auth' given twice; exactly one selects the key used to send",
                );
                continue;
            }
            match fields.get(1).and_then(|n| n.parse::<u8>().ok()) {
                Some(n) if n <= MAX_KEY_INDEX && fields.len() == 2 => active = Some((n, line)),
                _ => diag.error(
                    at,
                    Some("auth"),
                    format!("expected 'auth N' with N from 0 to {MAX_KEY_INDEX}"),
                ),
            }
            continue;
        }
        let Some(number) = fields[0].parse::<u8>().ok().filter(|n| *n <= MAX_KEY_INDEX) else {
            diag.error(
                at,
                Some(fields[0]),
                format!("expected 'auth N' or 'N METHOD [SECRET]' with N from 0 to {MAX_KEY_INDEX}"),
            );
            continue;
        };
        let Some(method_name) = fields.get(1) else {
            diag.error(
                at,
                Some(fields[0]),
                "expected a method after the key number: sha256, sha1, md5 or crc",
            );
            continue;
        };
        let Ok(method) = method_name.parse::<AuthMethod>() else {
            diag.error(
                at,
                Some(fields[0]),
                format!("unknown method {method_name:?}: expected sha256, sha1, md5 or crc"),
            );
            continue;
        };
        // A secret may contain spaces: it is the rest of the line.
        let secret = match body.splitn(3, char::is_whitespace).nth(2) {
            Some(rest) => rest.trim().to_owned(),
            None => String::new(),
        };
        match method {
            AuthMethod::Crc if !secret.is_empty() => {
                diag.warn(
                    at.clone(),
                    Some(fields[0]),
                    "crc takes no key; the text after it is ignored",
                );
            }
            AuthMethod::Crc => {}
            _ if secret.is_empty() => {
                diag.error(
                    at.clone(),
                    Some(fields[0]),
                    format!("{method_name} needs a secret: '{number} {method_name} SECRET'"),
                );
                continue;
            }
            _ => {}
        }
        if keys.contains_key(&number) {
            diag.error(at, Some(fields[0]), format!("key {number} is listed twice"));
            continue;
        }
        let secret = if method == AuthMethod::Crc {
            String::new()
        } else {
            secret
        };
        keys.insert(number, AuthKey { method, secret });
    }
    let file = Location::file(path);
    match active {
        None => diag.error(
            file,
            Some("auth"),
            "no 'auth N' line: it must say which key signs what this node sends",
        ),
        Some((number, line)) if !keys.contains_key(&number) => diag.error(
            Location::line(path, line),
            Some("auth"),
            format!("auth key {number} is not listed in this file"),
        ),
        Some(_) => {}
    }
    let active = active.map_or(0, |(number, _)| number);
    diag.finish(AuthKeys { active, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthKeys, ConfigError> {
        parse_authkeys(Path::new("authkeys"), text).map(|(keys, _)| keys)
    }

    #[test]
    fn reference_key_and_secret_with_spaces() {
        let keys = parse("auth 1\n1 sha1 anchor-secret-0123456789\n2 sha256 two words\n3 crc\n").unwrap();
        let key = keys.active_key().unwrap();
        assert_eq!(key.method, AuthMethod::Sha1);
        assert_eq!(key.secret, "anchor-secret-0123456789");
        assert_eq!(keys.keys[&2].secret, "two words");
        assert!(
            !format!("{keys:?}").contains("anchor-secret"),
            "Debug must not print secrets"
        );
    }

    #[test]
    fn broken_inputs() {
        for (text, expected) in [
            ("1 sha1 x\n", "authkeys: auth: no 'auth N' line"),
            ("auth 2\n1 sha1 x\n", "authkeys:1: auth: auth key 2 is not listed"),
            ("auth 1\n1 sha1\n", "authkeys:2: 1: sha1 needs a secret"),
            ("auth 1\n1 rot13 x\n", "authkeys:2: 1: unknown method \"rot13\""),
            (
                "auth 1\n16 sha1 x\n",
                "authkeys:2: 16: expected 'auth N' or 'N METHOD [SECRET]'",
            ),
            (
                "auth 1\nauth 1\n1 md5 x\n",
                "authkeys:2: auth: 'auth' given twice",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn group_or_world_access_is_refused() {
        assert!(check_secret_file_mode(Path::new("authkeys"), 0o100600).is_ok());
        assert!(check_secret_file_mode(Path::new("authkeys"), 0o100400).is_ok());
        let error = check_secret_file_mode(Path::new("/etc/ha.d/authkeys"), 0o100644).unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/ha.d/authkeys: bad permissions 0644: the file holds secrets and must not be readable or writable by group or others; fix with: chmod 600 /etc/ha.d/authkeys"
        );
    }
}
