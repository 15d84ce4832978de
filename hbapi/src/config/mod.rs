//! The configuration model and its readers.
//!
//! A configuration directory holds either the classic trio `ha.cf` + `haresources` +
//! `authkeys`, read exactly as Heartbeat 3.0.6 reads them, or one `ha.toml` (which may refer
//! to an `authkeys` file). Both produce the same [`ClusterConfig`]. Every problem is reported
//! with file, line, column where it helps, the directive, and what was expected; warnings
//! (deprecated or unimplemented directives) are returned beside the configuration so that the
//! caller logs each one.

mod authkeys;
mod diag;
mod duration;
mod hacf;
mod haresources;
mod model;
pub mod ocfwrap;
mod tomlform;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use authkeys::{check_secret_file_mode, parse_authkeys};
pub use diag::{ConfigError, Diagnostic, Location};
pub use duration::{format_time, parse_time};
pub use hacf::{check_node_name, defaults, parse_bool, parse_ha_cf, HaCf};
pub use haresources::{check_agent_name, parse_haresources, parse_resource_token};
pub use model::*;
pub use tomlform::{parse_toml, to_toml};

/// File names inside a configuration directory.
pub mod files {
    /// Heartbeat's main file.
    pub const HA_CF: &str = "ha.cf";
    /// Heartbeat v1 resource groups.
    pub const HARESOURCES: &str = "haresources";
    /// Authentication keys.
    pub const AUTHKEYS: &str = "authkeys";
    /// The TOML form.
    pub const HA_TOML: &str = "ha.toml";
}

/// Which form a configuration was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// ha.cf + haresources + authkeys.
    Classic {
        /// ha.cf.
        ha_cf: PathBuf,
    },
    /// ha.toml.
    Toml {
        /// ha.toml.
        path: PathBuf,
    },
}

/// A parse result: the value and its warnings, or every error.
pub type Parsed<T> = Result<(T, Vec<Diagnostic>), ConfigError>;

/// A configuration read from disk, with what to warn about.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: ClusterConfig,
    /// Warnings, to be logged once each.
    pub warnings: Vec<Diagnostic>,
    /// Where it came from.
    pub source: Source,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|error| ConfigError::file(path, format!("cannot read: {error}")))
}

/// Reads an authkeys file, refusing it when group or others can access it.
pub fn load_authkeys(path: &Path) -> Result<(AuthKeys, Vec<Diagnostic>), ConfigError> {
    let metadata =
        fs::metadata(path).map_err(|error| ConfigError::file(path, format!("cannot read: {error}")))?;
    check_secret_file_mode(path, metadata.permissions().mode())?;
    parse_authkeys(path, &read(path)?)
}

/// Reads the classic trio from `dir`. A missing haresources means no resource groups.
pub fn load_classic(dir: &Path) -> Result<Loaded, ConfigError> {
    let ha_cf_path = dir.join(files::HA_CF);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let ha_cf = match read(&ha_cf_path) {
        Ok(text) => {
            let (ha_cf, found) = hacf::parse_ha_cf_lenient(&ha_cf_path, &text);
            errors.extend(found.errors);
            warnings.extend(found.warnings);
            Some(ha_cf)
        }
        Err(error) => {
            errors.extend(error.errors);
            None
        }
    };
    let haresources_path = dir.join(files::HARESOURCES);
    let nodes = ha_cf.as_ref().map(|c| c.nodes.clone()).unwrap_or_default();
    let groups = if haresources_path.exists() {
        match read(&haresources_path).and_then(|text| parse_haresources(&haresources_path, &text, &nodes)) {
            Ok((mut groups, found)) => {
                warnings.extend(found);
                // Heartbeat's OCF::TYPE::INSTANCE, read with its instance file.
                let ocf_root = std::env::var_os("OCF_ROOT").unwrap_or_else(|| "/usr/lib/ocf".into());
                for group in &mut groups {
                    for resource in &mut group.resources {
                        match ocfwrap::resolve(resource.clone(), dir, Path::new(&ocf_root), &haresources_path)
                        {
                            Ok((resolved, found)) => {
                                *resource = resolved;
                                warnings.extend(found);
                            }
                            Err(error) => errors.push(error),
                        }
                    }
                }
                groups
            }
            Err(error) => {
                errors.extend(error.errors);
                Vec::new()
            }
        }
    } else {
        warnings.push(Diagnostic::new(
            Location::file(&haresources_path),
            None,
            "no haresources file: this cluster manages no resources",
        ));
        Vec::new()
    };
    let auth = match load_authkeys(&dir.join(files::AUTHKEYS)) {
        Ok((auth, found)) => {
            warnings.extend(found);
            Some(auth)
        }
        Err(error) => {
            errors.extend(error.errors);
            None
        }
    };
    if let Some(ha_cf) = &ha_cf {
        warnings.extend(readable_stonith_parameters(&ha_cf_path, &ha_cf.stonith));
    }
    match (ha_cf, auth) {
        (Some(ha_cf), Some(auth)) if errors.is_empty() => Ok(Loaded {
            config: assemble(ha_cf, groups, auth),
            warnings,
            source: Source::Classic { ha_cf: ha_cf_path },
        }),
        _ => Err(ConfigError { errors }),
    }
}

fn assemble(ha_cf: HaCf, groups: Vec<ResourceGroup>, auth: AuthKeys) -> ClusterConfig {
    ClusterConfig {
        groups,
        auth,
        ..ha_cf
    }
}

/// Reads `dir/ha.toml`. When it holds keys itself it must be private, like authkeys.
pub fn load_toml(dir: &Path) -> Result<Loaded, ConfigError> {
    let path = dir.join(files::HA_TOML);
    let text = read(&path)?;
    let load_keys = |file: &str| load_authkeys(&dir.join(file));
    let (config, mut warnings) = parse_toml(&path, &text, &load_keys)?;
    if toml_holds_keys(&text) {
        let mode = fs::metadata(&path)
            .map_err(|error| ConfigError::file(&path, format!("cannot read: {error}")))?
            .permissions()
            .mode();
        check_secret_file_mode(&path, mode)?;
    }
    warnings.extend(readable_stonith_parameters(&path, &config.stonith));
    Ok(Loaded {
        config,
        warnings,
        source: Source::Toml { path },
    })
}

/// Whether ha.toml's text holds authentication keys itself (`[auth] keys = […]` with a
/// secret), rather than naming an authkeys file: then it must be as private as authkeys.
fn toml_holds_keys(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        // parse_toml accepted it; should this disagree, check the mode rather than not.
        return true;
    };
    table
        .get("auth")
        .and_then(|auth| auth.get("keys"))
        .and_then(toml::Value::as_array)
        .is_some_and(|keys| {
            keys.iter().any(|key| {
                key.get("secret")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
        })
}

/// A warning when `path`, readable by group or others, gives stonith devices parameters
/// (their passwords, as a rule). Heartbeat accepts a readable ha.cf, and so do we; the
/// administrator is told once.
fn readable_stonith_parameters(path: &Path, stonith: &[StonithSpec]) -> Option<Diagnostic> {
    let with_parameters = stonith
        .iter()
        .any(|device| matches!(device, StonithSpec::Host { params, .. } if !params.is_empty()));
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (with_parameters && mode & 0o077 != 0).then(|| {
        Diagnostic::new(
            Location::file(path),
            Some("stonith_host"),
            format!(
                "mode {:04o}: this file gives stonith devices their parameters (passwords) and other users can read it; chmod 600 {}",
                mode & 0o7777,
                path.display()
            ),
        )
    })
}

/// Reads whichever form `dir` holds: ha.toml when present, else the classic trio.
pub fn load_dir(dir: &Path) -> Result<Loaded, ConfigError> {
    if dir.join(files::HA_TOML).exists() {
        let mut loaded = load_toml(dir)?;
        if dir.join(files::HA_CF).exists() {
            loaded.warnings.push(Diagnostic::new(
                Location::file(&dir.join(files::HA_CF)),
                None,
                "ignored: ha.toml is present and takes precedence",
            ));
        }
        Ok(loaded)
    } else {
        load_classic(dir)
    }
}

/// Checks that `node` is a member, as Heartbeat does at start-up.
pub fn check_local_node(config: &ClusterConfig, node: &str, source: &Source) -> Result<(), ConfigError> {
    if config.nodes.iter().any(|n| n == node) {
        return Ok(());
    }
    let file = match source {
        Source::Classic { ha_cf } => ha_cf.clone(),
        Source::Toml { path } => path.clone(),
    };
    Err(ConfigError::single(Diagnostic::new(
        Location::file(&file),
        Some("node"),
        format!(
            "this node, {node:?}, is not in the configuration (nodes: {}); nodes are named as `uname -n` prints them, or by --node",
            config.nodes.join(", ")
        ),
    )))
}

/// The parameters Heartbeat's `cl_status hbparameter` answers, by Heartbeat's names, as this
/// configuration sets them (the master serves them on the bus).
pub fn heartbeat_parameters(config: &ClusterConfig) -> Vec<(String, String)> {
    let timing = &config.timing;
    vec![
        ("hbversion".into(), crate::VERSION.into()),
        ("keepalive".into(), format_time(timing.keepalive)),
        ("deadtime".into(), format_time(timing.deadtime)),
        ("warntime".into(), format_time(timing.warntime)),
        ("initdead".into(), format_time(timing.initdead)),
        ("deadping".into(), format_time(timing.deadping)),
        ("udpport".into(), config.udp_port.to_string()),
        ("auto_failback".into(), config.auto_failback.as_str().into()),
        ("cluster".into(), config.cluster_name.clone()),
        ("max_rexmit_delay".into(), format_time(config.max_rexmit_delay)),
        ("pacemaker".into(), "false".into()),
    ]
}

#[cfg(test)]
mod secrets_tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    const TOML_CLUSTER: &str = "[cluster]\nnodes = [\"alpha\", \"bravo\"]\n\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.1\"]\n\n[logging]\nfile = \"/var/log/ha-log\"\n\n";

    #[test]
    fn an_ha_toml_holding_keys_must_be_private_whatever_else_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let inline = format!(
            "{TOML_CLUSTER}[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"s3cret\" }}]\n"
        );
        write(dir.path(), files::HA_TOML, &inline, 0o644);
        let error = load_toml(dir.path()).unwrap_err().to_string();
        assert!(error.contains("bad permissions 0644"), "{error}");
        write(dir.path(), files::HA_TOML, &inline, 0o600);
        load_toml(dir.path()).unwrap();

        // Keys in authkeys: ha.toml itself may be readable (authkeys may not).
        let by_file = format!("{TOML_CLUSTER}[auth]\nfile = \"authkeys\"\n");
        write(dir.path(), files::HA_TOML, &by_file, 0o644);
        write(dir.path(), files::AUTHKEYS, "auth 1\n1 sha1 s3cret\n", 0o600);
        load_toml(dir.path()).unwrap();
        write(dir.path(), files::AUTHKEYS, "auth 1\n1 sha1 s3cret\n", 0o640);
        let error = load_toml(dir.path()).unwrap_err().to_string();
        assert!(error.contains("authkeys: bad permissions 0640"), "{error}");
    }

    #[test]
    fn a_readable_file_giving_stonith_parameters_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files::AUTHKEYS, "auth 1\n1 sha1 s3cret\n", 0o600);
        write(dir.path(), files::HARESOURCES, "", 0o644);
        let ha_cf = "node alpha bravo\nucast lo 127.0.0.1\nstonith_host * external/ipmi bravo 10.0.0.2 admin pa55word lan\n";
        let warned = |loaded: &Loaded| {
            loaded
                .warnings
                .iter()
                .any(|w| w.to_string().contains("stonith devices their parameters"))
        };
        write(dir.path(), files::HA_CF, ha_cf, 0o644);
        let loaded = load_classic(dir.path()).unwrap();
        assert!(warned(&loaded), "{:?}", loaded.warnings);
        assert!(
            loaded
                .warnings
                .iter()
                .all(|w| !w.to_string().contains("pa55word")),
            "a warning repeated the password"
        );
        write(dir.path(), files::HA_CF, ha_cf, 0o600);
        assert!(!warned(&load_classic(dir.path()).unwrap()));
        // Without stonith parameters a readable ha.cf is Heartbeat's normal.
        write(
            dir.path(),
            files::HA_CF,
            "node alpha bravo\nucast lo 127.0.0.1\n",
            0o644,
        );
        assert!(!warned(&load_classic(dir.path()).unwrap()));

        let toml = format!(
            "{TOML_CLUSTER}[auth]\nfile = \"authkeys\"\n\n[[stonith]]\ntype = \"external/ipmi\"\nhost = \"*\"\nparams = [\"bravo\", \"10.0.0.2\", \"admin\", \"pa55word\", \"lan\"]\n"
        );
        write(dir.path(), files::HA_TOML, &toml, 0o644);
        assert!(warned(&load_toml(dir.path()).unwrap()));
        write(dir.path(), files::HA_TOML, &toml, 0o600);
        assert!(!warned(&load_toml(dir.path()).unwrap()));
    }
}
