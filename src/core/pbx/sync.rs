//! The per-user sync state machine: one [`Link`] joins one PBX extension to one Teams user.
//!
//! The engine feeds it what it observes (line states, PBX profiles, the Teams aggregate
//! presence) and calls [`Link::tick`] at the time the last [`Step`] asked for. Every call
//! returns the writes to make now. Nothing here does I/O or reads a clock.
//!
//! Why it is shaped like this:
//! * Graph change notifications carry the *aggregate* presence and no writer identity, so our
//!   own writes come back as observations. An echo ledger (what we wrote, when) and the
//!   rule "while our session is up, the value it produces is ours" keep them from being
//!   mapped back to the PBX, which would loop.
//! * The link reconciles towards a desired state instead of replaying events, so duplicate,
//!   late or reordered inputs and a reconnect snapshot cost no extra writes.
//! * It serialises (serde), so the engine can store it: after a restart the ledger and the
//!   ownership of a PBX profile we set are still known.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{LineState, Profile};
use super::rules::{LineVerb, ProfileVerb, TeamsOutcome};
use super::settings::td;
pub use super::settings::{Policy, Settings, SettingsError};
use crate::core::presence::{Activity, Availability, Presence};

/// A write the engine must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Graph setPresence through our app session.
    SetSession {
        /// Availability to set.
        availability: Availability,
        /// Activity to set.
        activity: Activity,
        /// `expirationDuration`.
        expires: Duration,
    },
    /// Graph clearPresence of our app session (a 404 means it was already gone: fine).
    ClearSession,
    /// Graph setUserPreferredPresence (opt-in profile rules only).
    SetPreferred {
        /// Availability to set.
        availability: Availability,
        /// Activity to set.
        activity: Activity,
    },
    /// Graph clearUserPreferredPresence.
    ClearPreferred,
    /// Set the extension's PBX status profile.
    SetPbxProfile(Profile),
}

/// The outcome of one input: writes to make now, and when to call [`Link::tick`] next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// Writes, in order.
    pub actions: Vec<Action>,
    /// The next time something is due (a hold-down, a stable window, a rate limit, a
    /// session re-post); `None` when nothing is.
    pub next_wake: Option<DateTime<Utc>>,
}

/// What the PBX line asks of our session, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Target {
    Session(Presence),
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SessionState {
    presence: Presence,
    posted_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Preferred {
    Set(Presence),
    Clear,
}

/// One entry of the echo ledger: a value we wrote and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Written<T> {
    value: T,
    at: DateTime<Utc>,
    /// PBX only: the PBX has shown it (its echo has been consumed).
    #[serde(default)]
    settled: bool,
    /// PBX only: we claimed ownership when we wrote it.
    #[serde(default)]
    own: bool,
}

/// A PBX profile the Teams → PBX rules want written, not yet written. Stored as the pair
/// `[profile, own]` it always was, so links stored by older builds read the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Profile, bool)", into = "(Profile, bool)")]
struct PendingProfile {
    profile: Profile,
    /// Whether we own the profile once written (the rule's `own`).
    own: bool,
}

impl From<(Profile, bool)> for PendingProfile {
    fn from((profile, own): (Profile, bool)) -> Self {
        Self { profile, own }
    }
}

impl From<PendingProfile> for (Profile, bool) {
    fn from(p: PendingProfile) -> Self {
        (p.profile, p.own)
    }
}

/// The state of one extension ↔ Teams user link. Serialisable, so the engine can store it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Link {
    line: Option<LineState>,
    target: Option<(Target, DateTime<Utc>)>,
    session: Option<SessionState>,
    /// A session of ours may exist that we know nothing about (crash, lost state).
    session_unknown: bool,
    preferred_pending: Option<Preferred>,
    preferred_written: Option<Preferred>,
    teams_ledger: Vec<Written<Presence>>,
    /// The last Teams aggregate observed, and since when it has had that value.
    teams_observed: Option<(Presence, DateTime<Utc>)>,
    /// The last Teams state the Teams → PBX rules were evaluated for.
    teams_acted: Option<Presence>,
    pbx_observed: Option<Profile>,
    pbx_written: Option<Written<Profile>>,
    /// The PBX profile we set and own; ownership is lost as soon as anyone else touches it.
    owned: Option<Profile>,
    pbx_pending: Option<PendingProfile>,
    last_write_teams: Option<DateTime<Utc>>,
    last_write_pbx: Option<DateTime<Utc>>,
}

impl Link {
    /// A link with no memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The engine calls this at start for every mapped user: a session of ours may have
    /// been left behind by a crash, so it is cleared once unless a call needs it.
    pub fn session_may_be_left_behind(&mut self, policy: &Policy, now: DateTime<Utc>) -> Step {
        self.session_unknown = true;
        self.reconcile(policy, now)
    }

    /// The PBX line entered `state`.
    pub fn observe_line(&mut self, policy: &Policy, state: LineState, now: DateTime<Utc>) -> Step {
        self.update_line(policy, state, now);
        self.reconcile(policy, now)
    }

    /// The PBX reported the extension's profile (an event: a change, or the person selecting
    /// it again). `at` is when the PBX saw it.
    pub fn observe_pbx_profile(
        &mut self,
        policy: &Policy,
        profile: Profile,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Step {
        self.update_profile(policy, profile, at, false);
        self.reconcile(policy, now)
    }

    /// A reconnect snapshot: diffed against what we knew, never replayed.
    pub fn observe_snapshot(
        &mut self,
        policy: &Policy,
        line: LineState,
        profile: Option<Profile>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Step {
        self.update_line(policy, line, now);
        if let Some(profile) = profile {
            self.update_profile(policy, profile, at, true);
        }
        self.reconcile(policy, now)
    }

    /// Graph reported the user's aggregate presence (notification or poll; duplicates and
    /// stale values are expected).
    pub fn observe_teams(
        &mut self,
        policy: &Policy,
        presence: Presence,
        now: DateTime<Utc>,
    ) -> Step {
        if self.teams_observed.as_ref().map(|(p, _)| p) != Some(&presence) {
            self.teams_observed = Some((presence, now));
        }
        self.reconcile(policy, now)
    }

    /// Like [`Link::observe_teams`], for a value read from Graph just now (a poll), which
    /// cannot be a late copy: Graph has moved past the values we wrote that differ from it,
    /// so they stop counting as pending echoes. (While our session stands, the session
    /// itself still marks its value as ours.) Without this, a Teams call starting soon after
    /// a PBX call ended would wait out the whole echo window.
    pub fn observe_teams_read(
        &mut self,
        policy: &Policy,
        presence: Presence,
        now: DateTime<Utc>,
    ) -> Step {
        self.teams_ledger.retain(|w| w.value == presence);
        self.observe_teams(policy, presence, now)
    }

    /// Time passed: do what is due.
    pub fn tick(&mut self, policy: &Policy, now: DateTime<Utc>) -> Step {
        self.reconcile(policy, now)
    }

    /// True when the current PBX profile is one we set and nobody changed since.
    pub fn owns_pbx_profile(&self, now: DateTime<Utc>, policy: &Policy) -> bool {
        let current = self.pbx_current(now, &policy.settings);
        self.owned.is_some() && self.owned == current
    }

    fn update_line(&mut self, policy: &Policy, state: LineState, now: DateTime<Utc>) {
        if self.line == Some(state) {
            return;
        }
        self.line = Some(state);
        let wanted = match policy.rules.line_verb(state) {
            LineVerb::Session(p) => Target::Session(p.clone()),
            LineVerb::ClearSession => Target::Clear,
            // Ringing and the like: keep whatever was asked before (a pending clear still
            // runs, a call in progress stays).
            LineVerb::Ignore => return,
        };
        // Dialing → InCall → Held all ask for the same session: keep the original `since`.
        if self.target.as_ref().map(|(t, _)| t) != Some(&wanted) {
            self.target = Some((wanted, now));
        }
    }

    fn update_profile(
        &mut self,
        policy: &Policy,
        profile: Profile,
        at: DateTime<Utc>,
        snapshot: bool,
    ) {
        if let Some(w) = &mut self.pbx_written {
            // Read before our write landed (a poll in flight): says nothing new.
            if at < w.at {
                return;
            }
            // Our echo only while one can still come: a poll that reports changes only
            // misses ours when the person changes it back within one interval, and the
            // person picking that value much later is their choice, not our echo.
            let echo_due = at < w.at + td(policy.settings.echo_ttl);
            if !w.settled && w.value == profile && echo_due {
                // Our echo: the PBX now shows what we set. It may land after a change the
                // person made while our write was in flight; then ours is the last word.
                w.settled = true;
                self.owned = w.own.then(|| profile.clone());
                self.pbx_observed = Some(profile);
                return;
            }
            // Read after our write and showing something else: somebody changed it since
            // (or ours never landed). Our value is no longer what the PBX has, so it stops
            // standing in for the current profile, and a later reading of our value is the
            // person's choice, not our echo (issue 28, item 11: a stale "current" made the
            // sync take the person's Away for its own and undo it).
            w.settled = true;
        }
        let Some(known) = &self.pbx_observed else {
            // The first thing we learn is a baseline, not a change the person made.
            self.pbx_observed = Some(profile);
            return;
        };
        if *known == profile && snapshot {
            return; // a snapshot that agrees with what we knew
        }
        // A change, or the person selecting the same profile again: either way it is theirs
        // now, and their choice wins over whatever we had queued.
        self.owned = None;
        self.pbx_pending = None;
        self.pbx_observed = Some(profile.clone());
        self.preferred_pending = match policy.rules.profile_verb(&profile) {
            Some(ProfileVerb::Preferred(p)) => Some(Preferred::Set(p.clone())),
            Some(ProfileVerb::ClearPreferred) => Some(Preferred::Clear),
            None => self.preferred_pending.take(),
        };
    }

    /// The PBX profile as far as we know: our unconfirmed write while its echo may still
    /// come, else what the PBX last showed.
    fn pbx_current(&self, now: DateTime<Utc>, s: &Settings) -> Option<Profile> {
        match &self.pbx_written {
            Some(w) if !w.settled && now < w.at + td(s.echo_ttl) => Some(w.value.clone()),
            _ => self.pbx_observed.clone(),
        }
    }

    /// `None`: not our echo. `Some(None)`: ours for as long as our write stands.
    /// `Some(Some(t))`: ours until `t`.
    fn echo(
        &self,
        p: &Presence,
        now: DateTime<Utc>,
        s: &Settings,
    ) -> Option<Option<DateTime<Utc>>> {
        let session = self.session.as_ref().is_some_and(|x| x.presence == *p);
        let preferred = self.preferred_written == Some(Preferred::Set(p.clone()));
        if session || preferred {
            return Some(None);
        }
        self.teams_ledger
            .iter()
            .filter(|w| w.value == *p)
            .map(|w| w.at + td(s.echo_ttl))
            .filter(|until| *until > now)
            .max()
            .map(Some)
    }

    fn reconcile(&mut self, policy: &Policy, now: DateTime<Utc>) -> Step {
        let s = &policy.settings;
        if self.session.as_ref().is_some_and(|x| x.expires_at <= now) {
            self.session = None; // lapsed on Graph's side: nothing to clear
        }
        self.teams_ledger.retain(|w| w.at + td(s.echo_ttl) > now);
        let mut step = Step::default();
        let mut wake = |t: DateTime<Utc>, step: &mut Step| {
            step.next_wake = Some(step.next_wake.map_or(t, |w| w.min(t)));
        };
        self.evaluate_teams(policy, now, &mut step, &mut wake);
        self.write_teams(s, now, &mut step, &mut wake);
        self.write_pbx(s, now, &mut step, &mut wake);
        step
    }

    /// Teams → PBX: maps a stable, non-echo Teams state through the rules once.
    fn evaluate_teams(
        &mut self,
        policy: &Policy,
        now: DateTime<Utc>,
        step: &mut Step,
        wake: &mut impl FnMut(DateTime<Utc>, &mut Step),
    ) {
        let s = &policy.settings;
        let Some((obs, since)) = self.teams_observed.clone() else {
            return;
        };
        if self.teams_acted.as_ref() == Some(&obs) {
            return;
        }
        let stable_at = since + td(s.stable);
        if now < stable_at {
            return wake(stable_at, step);
        }
        match self.echo(&obs, now, s) {
            Some(Some(until)) => return wake(until, step),
            Some(None) => return,
            None => {}
        }
        self.teams_acted = Some(obs.clone());
        let current = self.pbx_current(now, s);
        let owned = self.owned.is_some() && self.owned == current;
        // The latest stable Teams state decides: a write queued for an older one is replaced
        // or dropped.
        self.pbx_pending = match policy.rules.teams_to_pbx(&obs, current.as_ref(), owned) {
            Some(TeamsOutcome::SetPbx { profile, own }) if current.as_ref() != Some(profile) => {
                Some(PendingProfile {
                    profile: profile.clone(),
                    own: *own,
                })
            }
            _ => None,
        };
    }

    /// PBX → Teams: our session (immediately on a call, after the hold-down at its end),
    /// then any opt-in preferred write; one write per `min_write_interval`.
    fn write_teams(
        &mut self,
        s: &Settings,
        now: DateTime<Utc>,
        step: &mut Step,
        wake: &mut impl FnMut(DateTime<Utc>, &mut Step),
    ) {
        let mut due: Option<Action> = None;
        match &self.target {
            Some((Target::Session(p), _)) => match &self.session {
                Some(x) if x.presence == *p => {
                    let repost = s.repost_at(x.posted_at);
                    if now >= repost {
                        due = Some(set_session(p, s));
                    } else {
                        wake(repost, step);
                    }
                }
                _ => due = Some(set_session(p, s)),
            },
            Some((Target::Clear, since)) if self.session.is_some() || self.session_unknown => {
                let at = *since + td(s.hold);
                if now >= at {
                    due = Some(Action::ClearSession);
                } else {
                    wake(at, step);
                }
            }
            Some((Target::Clear, _)) => {}
            None if self.session_unknown => due = Some(Action::ClearSession),
            None => {}
        }
        if due.is_none() {
            due = match self.preferred_pending.take() {
                Some(Preferred::Set(p)) => {
                    let observed = self.teams_observed.as_ref().map(|(o, _)| o);
                    let written = self.preferred_written == Some(Preferred::Set(p.clone()));
                    (!(written && observed == Some(&p))).then(|| Action::SetPreferred {
                        availability: p.availability.clone(),
                        activity: p.activity.clone(),
                    })
                }
                Some(Preferred::Clear) if self.preferred_written != Some(Preferred::Clear) => {
                    Some(Action::ClearPreferred)
                }
                Some(Preferred::Clear) | None => None,
            };
        }
        let Some(action) = due else { return };
        if let Some(last) = self.last_write_teams {
            let allowed = last + td(s.min_write_interval);
            if now < allowed {
                // Put a preferred write back; session writes are recomputed next time.
                match action {
                    Action::SetPreferred {
                        availability,
                        activity,
                    } => {
                        self.preferred_pending = Some(Preferred::Set(Presence {
                            availability,
                            activity,
                        }));
                    }
                    Action::ClearPreferred => self.preferred_pending = Some(Preferred::Clear),
                    _ => {}
                }
                return wake(allowed, step);
            }
        }
        // Clearing a session a crash may have left behind is housekeeping at start, not a
        // sync write: it must not delay the first real call by the write interval.
        let housekeeping = action == Action::ClearSession && self.session.is_none();
        if !housekeeping {
            self.last_write_teams = Some(now);
        }
        match &action {
            Action::SetSession {
                availability,
                activity,
                ..
            } => {
                let presence = Presence {
                    availability: availability.clone(),
                    activity: activity.clone(),
                };
                self.teams_ledger.push(Written {
                    value: presence.clone(),
                    at: now,
                    settled: false,
                    own: false,
                });
                self.session = Some(SessionState {
                    presence,
                    posted_at: now,
                    expires_at: now + td(s.session_expiry),
                });
                self.session_unknown = false;
                wake(s.repost_at(now), step);
            }
            Action::ClearSession => {
                // The cleared value may still arrive late: remember it as ours for a while.
                if let Some(old) = self.session.take() {
                    self.teams_ledger.push(Written {
                        value: old.presence,
                        at: now,
                        settled: false,
                        own: false,
                    });
                }
                self.session_unknown = false;
            }
            Action::SetPreferred {
                availability,
                activity,
            } => {
                let p = Presence {
                    availability: availability.clone(),
                    activity: activity.clone(),
                };
                self.teams_ledger.push(Written {
                    value: p.clone(),
                    at: now,
                    settled: false,
                    own: false,
                });
                self.preferred_written = Some(Preferred::Set(p));
            }
            Action::ClearPreferred => self.preferred_written = Some(Preferred::Clear),
            Action::SetPbxProfile(_) => {}
        }
        step.actions.push(action);
        // Anything still due after this write waits for the next slot.
        if self.preferred_pending.is_some() || self.target_needs_write(now, s) {
            wake(now + td(s.min_write_interval), step);
        }
    }

    fn target_needs_write(&self, now: DateTime<Utc>, s: &Settings) -> bool {
        match &self.target {
            Some((Target::Session(p), _)) => self.session.as_ref().is_none_or(|x| x.presence != *p),
            Some((Target::Clear, since)) => {
                (self.session.is_some() || self.session_unknown) && now >= *since + td(s.hold)
            }
            None => self.session_unknown,
        }
    }

    fn write_pbx(
        &mut self,
        s: &Settings,
        now: DateTime<Utc>,
        step: &mut Step,
        wake: &mut impl FnMut(DateTime<Utc>, &mut Step),
    ) {
        let Some(PendingProfile { profile, own }) = self.pbx_pending.clone() else {
            return;
        };
        if self.pbx_current(now, s).as_ref() == Some(&profile) {
            self.pbx_pending = None;
            return;
        }
        if let Some(last) = self.last_write_pbx {
            let allowed = last + td(s.min_write_interval);
            if now < allowed {
                return wake(allowed, step);
            }
        }
        self.pbx_pending = None;
        self.last_write_pbx = Some(now);
        self.pbx_written = Some(Written {
            value: profile.clone(),
            at: now,
            settled: false,
            own,
        });
        self.owned = own.then(|| profile.clone());
        step.actions.push(Action::SetPbxProfile(profile));
    }
}

fn set_session(p: &Presence, s: &Settings) -> Action {
    Action::SetSession {
        availability: p.availability.clone(),
        activity: p.activity.clone(),
        expires: s.session_expiry,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
