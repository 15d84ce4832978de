//! A configured device: a family with its parameters, one operation at a time, and its last
//! host listing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{resolve, split_hosts, Call, Family, Operator, PluginDirs, PluginError};

/// How long a device's listed hosts are believed before it is asked again. Listing runs the
/// plugin with the device's credentials, and anyone may ask for the list (`ListDevices`), so
/// it must not run once per question; a fence asks again when the last answer was a failure.
pub const HOST_LIST_TTL: Duration = Duration::from_secs(60);

/// A configured device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its name (type and position in the configuration).
    pub id: String,
    /// Type name.
    pub device_type: String,
    /// Its family.
    pub family: Arc<dyn Family>,
    /// Parameters by name.
    pub params: BTreeMap<String, String>,
    session: Session,
}

/// A device's identity is its configuration, not its run-time state.
impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        (&self.id, &self.device_type, &self.params) == (&other.id, &other.device_type, &other.params)
    }
}

impl Eq for Device {}

/// What a device does at run time: one operation at a time (many PDUs and BMCs take a single
/// session, and a listing must never hold one while a fence waits behind a crowd of others),
/// and its last host listing.
#[derive(Debug, Default, Clone)]
struct Session(Arc<SessionState>);

#[derive(Debug, Default)]
struct SessionState {
    turn: tokio::sync::Mutex<()>,
    listed: std::sync::Mutex<Option<Listing>>,
}

#[derive(Debug, Clone)]
struct Listing {
    at: Instant,
    hosts: Result<Vec<String>, String>,
}

impl Device {
    /// A device of `device_type` with `params`.
    pub fn new(
        id: &str,
        device_type: &str,
        params: BTreeMap<String, String>,
        dirs: &PluginDirs,
    ) -> Result<Device, PluginError> {
        Ok(Device {
            id: id.to_owned(),
            device_type: device_type.to_owned(),
            family: resolve(device_type, dirs)?,
            params,
            session: Session::default(),
        })
    }

    /// The `pcmk_reboot_timeout` parameter, when given.
    fn configured_timeout(&self) -> Option<Duration> {
        self.params
            .get("pcmk_reboot_timeout")
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .map(Duration::from_secs)
    }

    /// Time allowed per attempt (and for listing hosts, checking status).
    pub fn timeout(&self) -> Duration {
        self.configured_timeout().unwrap_or(Duration::from_secs(60))
    }

    /// Attempts per fence: one where a person answers (meatware: its request stays pending
    /// until the operator answers, and a second round would only prompt again), else
    /// 1 + `pcmk_reboot_retries`.
    pub fn attempts(&self) -> u32 {
        if self.family.waits_for_operator() {
            return 1;
        }
        1 + self
            .params
            .get("pcmk_reboot_retries")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
            .min(10)
    }

    /// Whether a person answers instead of the device (meatware).
    pub fn waits_for_operator(&self) -> bool {
        self.family.waits_for_operator()
    }

    /// Whether it fences whatever host it is asked to (null).
    pub fn fences_any_host(&self) -> bool {
        self.family.fences_any_host()
    }

    fn call<'a>(&'a self, local_node: &'a str) -> Call<'a> {
        Call {
            device_type: &self.device_type,
            params: &self.params,
            timeout: self.timeout(),
            configured_timeout: self.configured_timeout(),
            local_node,
        }
    }

    /// The hosts this device controls: a listing younger than [`HOST_LIST_TTL`] is reused,
    /// failed or not.
    pub async fn hosts(&self, local_node: &str) -> Result<Vec<String>, PluginError> {
        self.hosts_within(local_node, false).await
    }

    /// The hosts, for a fence: as [`Device::hosts`], but a failed listing is tried again.
    pub async fn hosts_for_fencing(&self, local_node: &str) -> Result<Vec<String>, PluginError> {
        self.hosts_within(local_node, true).await
    }

    async fn hosts_within(&self, local_node: &str, retry_failure: bool) -> Result<Vec<String>, PluginError> {
        if let Some(list) = self.params.get("pcmk_host_list") {
            return Ok(split_hosts(list));
        }
        let call = self.call(local_node);
        if !self.family.lists_by_running() {
            return self.family.list_hosts(&call).await;
        }
        let recent = |state: &SessionState| {
            let listed = state.listed.lock().unwrap_or_else(|e| e.into_inner());
            listed
                .as_ref()
                .filter(|l| l.at.elapsed() < HOST_LIST_TTL && (l.hosts.is_ok() || !retry_failure))
                .map(|l| l.hosts.clone().map_err(PluginError::Failed))
        };
        if let Some(known) = recent(&self.session.0) {
            return known;
        }
        let _turn = self.session.0.turn.lock().await;
        // Whoever held the turn before may have just listed.
        if let Some(known) = recent(&self.session.0) {
            return known;
        }
        let hosts = self.family.list_hosts(&call).await;
        *self.session.0.listed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Listing {
            at: Instant::now(),
            hosts: match &hosts {
                Ok(list) => Ok(list.clone()),
                Err(error) => Err(error.to_string()),
            },
        });
        hosts
    }

    /// Whether the device works (`-S`).
    pub async fn status(&self) -> Result<(), PluginError> {
        let _turn = self.session.0.turn.lock().await;
        self.family.status(&self.call("")).await
    }

    /// Fences `host` with `action` (`reset`/`reboot`, `off`, `on`) — one attempt, within the
    /// device's timeout. `meatware` waits for `confirmed` (meatclient through stonithd).
    pub async fn fence(
        &self,
        action: &str,
        host: &str,
        local_node: &str,
        confirmed: impl Future<Output = Result<(), PluginError>> + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<String, PluginError> {
        // A person waits for nobody's device session.
        let _turn = match self.family.waits_for_operator() {
            true => None,
            false => Some(self.session.0.turn.lock().await),
        };
        let glue_action = match action {
            "reboot" | "reset" => "reset",
            "off" => "off",
            "on" => "on",
            other => {
                return Err(PluginError::Config(format!(
                    "action {other:?}: expected reset, reboot, off or on"
                )))
            }
        };
        let call = self.call(local_node);
        let operator = Operator {
            confirmed: Box::pin(confirmed),
            cancel: Box::pin(cancel),
        };
        self.family.fence(&call, glue_action, host, operator).await
    }

    /// Its meta-data XML (`stonith -m`).
    pub async fn meta_data(&self) -> Result<String, PluginError> {
        self.family.meta_data(&self.device_type).await
    }
}
