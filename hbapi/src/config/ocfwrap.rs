//! Heartbeat's OCF wrapper in haresources: `alpha OCF::Dummy::d1` runs the OCF agent `Dummy`
//! with the parameters of the instance file `CONFIG_DIR/conf/OCF/Dummy/d1`, a shell fragment
//! of `OCF_RESKEY_name=value` lines (Heartbeat's resource.d/OCF sources and exports it).
//!
//! Heartbeat runs its wrapper script, which needs OCF_ROOT/OCF_AGENTS in its environment;
//! here the form is recognised when the configuration is read and becomes an OCF resource
//! of the first provider (in name order, as the wrapper's `ls` finds it) that has the type,
//! so it runs without the wrapper and with OCF's exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Location};
use super::haresources::check_agent_name;
use super::model::{AgentClass, Resource};

/// The agent name Heartbeat's wrapper has in resource.d.
pub const WRAPPER: &str = "OCF";

/// The provider used when no OCF tree is found (resource-agents' own).
const DEFAULT_PROVIDER: &str = "heartbeat";

/// Where the instance file of `agent`'s `instance` lives.
pub fn instance_file(config_dir: &Path, agent: &str, instance: &str) -> PathBuf {
    config_dir.join("conf").join("OCF").join(agent).join(instance)
}

/// The first provider under `ocf_root` with an agent named `agent`.
fn provider_of(ocf_root: &Path, agent: &str) -> String {
    let mut providers: Vec<String> = std::fs::read_dir(ocf_root.join("resource.d"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join(agent).is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    providers.sort();
    providers
        .into_iter()
        .next()
        .unwrap_or_else(|| DEFAULT_PROVIDER.to_owned())
}

/// A shell value: bare, '…' or "…" (no expansion: a `$` is kept as written).
fn unquote(value: &str) -> Result<String, String> {
    let value = value.trim();
    for quote in ['\'', '"'] {
        if let Some(rest) = value.strip_prefix(quote) {
            return rest
                .strip_suffix(quote)
                .map(str::to_owned)
                .ok_or_else(|| format!("unterminated {quote} quote"));
        }
    }
    if value.contains(char::is_whitespace) {
        return Err("a value with spaces must be quoted".into());
    }
    Ok(value.to_owned())
}

fn is_shell_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads an instance file: `OCF_RESKEY_name=value` lines (`export` allowed, `#` comments);
/// the parameters by name, and warnings for lines that are not parameters.
pub fn parse_instance(
    path: &Path,
    text: &str,
) -> Result<(BTreeMap<String, String>, Vec<Diagnostic>), Diagnostic> {
    let mut params = BTreeMap::new();
    let mut warnings = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = Location::line(path, index + 1);
        let assignment = line.strip_prefix("export ").unwrap_or(line).trim();
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(Diagnostic::new(
                at,
                None,
                format!("expected NAME=value, found {line:?}"),
            ));
        };
        let name = name.trim();
        if !is_shell_name(name) {
            return Err(Diagnostic::new(
                at,
                None,
                format!("{name:?} is not a variable name"),
            ));
        }
        let value = unquote(value).map_err(|e| Diagnostic::new(at.clone(), Some(name), e))?;
        match name.strip_prefix("OCF_RESKEY_") {
            Some(param) if !param.is_empty() => {
                params.insert(param.to_owned(), value);
            }
            _ => warnings.push(Diagnostic::new(
                at,
                Some(name),
                "ignored: only OCF_RESKEY_ variables reach the agent",
            )),
        }
    }
    Ok((params, warnings))
}

/// `resource` as the OCF agent it names when it is Heartbeat's `OCF::TYPE::INSTANCE`; other
/// resources as they are.
pub fn resolve(
    resource: Resource,
    config_dir: &Path,
    ocf_root: &Path,
    haresources: &Path,
) -> Result<(Resource, Vec<Diagnostic>), Diagnostic> {
    if resource.class != AgentClass::Heartbeat || resource.agent != WRAPPER {
        return Ok((resource, Vec::new()));
    }
    let refuse = |message: String| Diagnostic::new(Location::file(haresources), None, message);
    let [agent, instance] = resource.args.as_slice() else {
        return Err(refuse(format!(
            "{}: Heartbeat's OCF form is OCF::TYPE::INSTANCE (e.g. OCF::Dummy::d1)",
            resource.id
        )));
    };
    for name in [agent, instance] {
        check_agent_name(name).map_err(|e| refuse(format!("{}: {e}", resource.id)))?;
    }
    let path = instance_file(config_dir, agent, instance);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        Diagnostic::new(
            Location::file(&path),
            None,
            format!("instance file of {} cannot be read: {error}", resource.id),
        )
    })?;
    let (params, warnings) = parse_instance(&path, &text)?;
    Ok((
        Resource {
            class: AgentClass::Ocf {
                provider: provider_of(ocf_root, agent),
            },
            agent: agent.clone(),
            args: Vec::new(),
            params,
            ..resource
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper(token: &str) -> Resource {
        super::super::parse_resource_token(token).unwrap()
    }

    #[test]
    fn an_instance_file_gives_the_agents_parameters() {
        let path = Path::new("conf/OCF/Dummy/d1");
        let text = "# the state file\nOCF_RESKEY_state=/run/d1.state\nexport OCF_RESKEY_fake='a b'\nOCF_RESKEY_op_sleep=\"2\"\nOCF_CHECK_LEVEL=10\n\n";
        let (params, warnings) = parse_instance(path, text).unwrap();
        assert_eq!(
            params,
            BTreeMap::from([
                ("state".to_owned(), "/run/d1.state".to_owned()),
                ("fake".to_owned(), "a b".to_owned()),
                ("op_sleep".to_owned(), "2".to_owned()),
            ])
        );
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].to_string().contains("OCF_CHECK_LEVEL"),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].to_string().contains(":5"), "{}", warnings[0]);
        for (bad, why) in [
            ("state /tmp/x", "expected NAME=value"),
            ("1x=2", "not a variable name"),
            ("OCF_RESKEY_a='open", "unterminated"),
            ("OCF_RESKEY_a=two words", "must be quoted"),
        ] {
            let error = parse_instance(path, bad).unwrap_err().to_string();
            assert!(error.contains(why) && error.contains(":1"), "{bad}: {error}");
        }
    }

    #[test]
    fn heartbeats_ocf_form_becomes_the_ocf_agent_of_the_first_provider() {
        let config = tempfile::tempdir().unwrap();
        let ocf = tempfile::tempdir().unwrap();
        for provider in ["pacemaker", "heartbeat"] {
            let dir = ocf.path().join("resource.d").join(provider);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("Dummy"), "#!/bin/sh\n").unwrap();
        }
        let file = instance_file(config.path(), "Dummy", "d1");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "OCF_RESKEY_state=/tmp/d1\n").unwrap();
        let haresources = Path::new("haresources");
        let (resource, warnings) =
            resolve(wrapper("OCF::Dummy::d1"), config.path(), ocf.path(), haresources).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(resource.id, "OCF::Dummy::d1");
        assert_eq!(resource.agent, "Dummy");
        assert!(resource.args.is_empty());
        assert_eq!(
            resource.class,
            AgentClass::Ocf {
                provider: "heartbeat".into()
            }
        );
        assert_eq!(resource.params.get("state").map(String::as_str), Some("/tmp/d1"));

        // Other resources pass untouched; a missing instance file and a wrong form are errors
        // naming the file.
        let other = wrapper("IPaddr::10.0.0.1");
        assert_eq!(
            resolve(other.clone(), config.path(), ocf.path(), haresources)
                .unwrap()
                .0,
            other
        );
        let missing = resolve(wrapper("OCF::Dummy::d2"), config.path(), ocf.path(), haresources)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("conf/OCF/Dummy/d2"), "{missing}");
        let short = resolve(wrapper("OCF::Dummy"), config.path(), ocf.path(), haresources)
            .unwrap_err()
            .to_string();
        assert!(short.contains("OCF::TYPE::INSTANCE"), "{short}");
    }
}
