//! Whether this node's watchdog may be fed, sans I/O. The device (`daemon::watchdog`) is
//! written on every heartbeat this node sends, as Heartbeat 3.0.6 tickles it when it hears
//! its own: a node whose hbcomm is not scheduled, or whose whole stack died, stops feeding it
//! and is reset after [`hbapi::config::watchdog_timeout`]. Beyond Heartbeat, as Pacemaker's
//! sbd does, the node also stops feeding it while groups run here and
//! - crmd says this node must not keep them (it lost quorum: its peers take them over once
//!   the watchdog must have fired), or
//! - crmd is gone (killed, or its respawns given up): nobody would stop them.
//!
//! crmd's word is kept across crmd's restarts: a respawned crmd probes and speaks again.

/// What crmd last said, and whether it is on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    groups_here: bool,
    hold: String,
    crmd_present: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Guard {
    /// Before crmd has said anything: nothing runs here yet (a node starts with its groups
    /// stopped, and crmd's start-up probe reports what it finds).
    pub fn new() -> Self {
        Guard {
            groups_here: false,
            hold: String::new(),
            crmd_present: true,
        }
    }

    /// Why the watchdog must not be fed now; `None` while it may be.
    pub fn starving(&self) -> Option<String> {
        if !self.groups_here {
            return None;
        }
        if !self.hold.is_empty() {
            return Some(self.hold.clone());
        }
        (!self.crmd_present).then(|| "crmd is gone while groups run here".to_owned())
    }

    /// crmd's word: whether groups run here and why this node must not be kept alive with
    /// them. Returns the new verdict when it changed.
    pub fn crmd_says(&mut self, groups_here: bool, hold: &str) -> Option<Option<String>> {
        let before = self.starving();
        self.groups_here = groups_here;
        hold.clone_into(&mut self.hold);
        self.changed(before)
    }

    /// crmd left the bus (`false`) or came back (`true`).
    pub fn crmd_present(&mut self, present: bool) -> Option<Option<String>> {
        let before = self.starving();
        self.crmd_present = present;
        self.changed(before)
    }

    /// At a planned stop: the device is disarmed (Linux's magic close) only when nothing
    /// forbids feeding it; otherwise it is closed armed and the machine resets.
    pub fn may_disarm(&self) -> bool {
        self.starving().is_none()
    }

    fn changed(&self, before: Option<String>) -> Option<Option<String>> {
        let after = self.starving();
        (after != before).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fed_until_crmd_says_otherwise() {
        let mut guard = Guard::new();
        assert_eq!(guard.starving(), None);
        assert_eq!(guard.crmd_says(true, ""), None);
        assert!(guard.may_disarm());
    }

    #[test]
    fn a_hold_starves_it_only_while_groups_run_here() {
        let mut guard = Guard::new();
        assert_eq!(
            guard.crmd_says(false, "no quorum"),
            None,
            "nothing runs here: fed"
        );
        assert_eq!(guard.crmd_says(true, "no quorum"), Some(Some("no quorum".into())));
        assert!(!guard.may_disarm());
        assert_eq!(guard.crmd_says(true, "no quorum"), None, "unchanged");
        assert_eq!(
            guard.crmd_says(false, "no quorum"),
            Some(None),
            "stopped in time: fed again"
        );
    }

    #[test]
    fn crmd_gone_with_groups_here_starves_it_until_it_is_back() {
        let mut guard = Guard::new();
        guard.crmd_says(true, "");
        assert_eq!(
            guard.crmd_present(false),
            Some(Some("crmd is gone while groups run here".into()))
        );
        assert!(!guard.may_disarm());
        assert_eq!(guard.crmd_present(true), Some(None));
        // Gone with nothing running: nothing to protect.
        guard.crmd_says(false, "");
        assert_eq!(guard.crmd_present(false), None);
        assert!(guard.may_disarm());
        // Its word survives its absence: a respawned crmd that finds groups speaks again.
        assert_eq!(
            guard.crmd_says(true, ""),
            Some(Some("crmd is gone while groups run here".into()))
        );
    }

    #[test]
    fn the_hold_names_the_reason_before_crmd_absence() {
        let mut guard = Guard::new();
        guard.crmd_says(true, "no quorum");
        assert_eq!(
            guard.crmd_present(false),
            None,
            "still starving, for the first reason"
        );
        assert_eq!(guard.starving().as_deref(), Some("no quorum"));
    }
}
