//! One test per sync rule, with time passed in.

use chrono::TimeZone;

use super::*;
use crate::core::pbx::rules::Preset;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn p(av: &str, ac: &str) -> Presence {
    Presence::new(av, ac)
}

fn pbx(name: &str) -> Profile {
    Profile::new(name)
}

fn policy(preset: Preset) -> Policy {
    Policy {
        rules: preset.rules(),
        settings: Settings::default(),
    }
}

fn busy_call() -> Action {
    Action::SetSession {
        availability: Availability::Busy,
        activity: Activity::InACall,
        expires: Duration::from_secs(3600),
    }
}

/// A 3CX link that knows the extension is Available and Teams is Available, all settled.
fn settled_3cx() -> (Policy, Link) {
    let pol = policy(Preset::ThreeCx);
    let mut link = Link::new();
    link.observe_snapshot(&pol, LineState::Idle, Some(pbx("Available")), t(0), t(0));
    link.observe_teams(&pol, p("Available", "Available"), t(0));
    assert_eq!(link.tick(&pol, t(100)).actions, vec![]);
    (pol, link)
}

#[test]
fn call_start_sets_busy_session_at_once_and_ringing_does_nothing() {
    let (pol, mut link) = settled_3cx();
    assert_eq!(
        link.observe_line(&pol, LineState::Ringing, t(200)).actions,
        vec![]
    );
    let step = link.observe_line(&pol, LineState::InCall, t(203));
    assert_eq!(step.actions, vec![busy_call()]);
    // Holding the call is still the same call: nothing new.
    assert_eq!(
        link.observe_line(&pol, LineState::Held, t(230)).actions,
        vec![]
    );
}

#[test]
fn call_end_clears_the_session_after_the_hold_down() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    let step = link.observe_line(&pol, LineState::Idle, t(260));
    assert_eq!(step.actions, vec![]);
    assert_eq!(step.next_wake, Some(t(265)));
    assert_eq!(link.tick(&pol, t(264)).actions, vec![]);
    assert_eq!(link.tick(&pol, t(265)).actions, vec![Action::ClearSession]);
    assert_eq!(link.tick(&pol, t(300)).actions, vec![]);
}

#[test]
fn a_transfer_within_the_hold_down_writes_nothing() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    let mut writes = Vec::new();
    writes.extend(link.observe_line(&pol, LineState::Idle, t(260)).actions);
    writes.extend(link.tick(&pol, t(262)).actions);
    writes.extend(link.observe_line(&pol, LineState::Ringing, t(263)).actions);
    writes.extend(link.observe_line(&pol, LineState::InCall, t(264)).actions);
    writes.extend(link.tick(&pol, t(300)).actions);
    assert_eq!(writes, vec![]);
}

#[test]
fn our_busy_echo_is_never_mapped_to_the_pbx() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    // Graph tells us what we wrote, twice, late, and it holds far beyond `stable`.
    link.observe_teams(&pol, p("Busy", "InACall"), t(205));
    link.observe_teams(&pol, p("Busy", "InACall"), t(209));
    assert_eq!(link.tick(&pol, t(400)).actions, vec![]);
    link.observe_line(&pol, LineState::Idle, t(500));
    assert_eq!(link.tick(&pol, t(505)).actions, vec![Action::ClearSession]);
    // A late copy of the echo after the clear is still ours.
    link.observe_teams(&pol, p("Available", "Available"), t(506));
    link.observe_teams(&pol, p("Busy", "InACall"), t(507));
    assert_eq!(link.tick(&pol, t(540)).actions, vec![]);
}

#[test]
fn a_teams_call_puts_an_available_extension_on_away_and_we_revert_only_our_own() {
    let (pol, mut link) = settled_3cx();
    link.observe_teams(&pol, p("Busy", "InACall"), t(200));
    assert_eq!(
        link.tick(&pol, t(209)).actions,
        vec![],
        "waits for `stable`"
    );
    assert_eq!(
        link.tick(&pol, t(210)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
    // The PBX echoes our Away: not a manual change, we still own it.
    link.observe_pbx_profile(&pol, pbx("Away"), t(211), t(211));
    assert!(link.owns_pbx_profile(t(212), &pol));
    link.observe_teams(&pol, p("Available", "Available"), t(300));
    assert_eq!(
        link.tick(&pol, t(310)).actions,
        vec![Action::SetPbxProfile(pbx("Available"))]
    );
}

#[test]
fn the_person_selecting_away_on_the_phone_takes_ownership_away_from_us() {
    let (pol, mut link) = settled_3cx();
    link.observe_teams(&pol, p("Busy", "InAMeeting"), t(200));
    assert_eq!(
        link.tick(&pol, t(210)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
    link.observe_pbx_profile(&pol, pbx("Away"), t(211), t(211));
    // The person presses Away on the phone although it already is Away.
    link.observe_pbx_profile(&pol, pbx("Away"), t(250), t(250));
    assert!(!link.owns_pbx_profile(t(251), &pol));
    link.observe_teams(&pol, p("Available", "Available"), t(300));
    assert_eq!(link.tick(&pol, t(400)).actions, vec![]);
}

#[test]
fn a_manual_pbx_profile_wins_over_a_teams_call() {
    let (pol, mut link) = settled_3cx();
    link.observe_pbx_profile(&pol, pbx("Away"), t(150), t(150));
    link.observe_teams(&pol, p("Busy", "InACall"), t(200));
    assert_eq!(link.tick(&pol, t(300)).actions, vec![]);
    link.observe_teams(&pol, p("Available", "Available"), t(400));
    assert_eq!(link.tick(&pol, t(500)).actions, vec![]);
    // Changing it while we had set it also ends our ownership.
    link.observe_teams(&pol, p("Busy", "InACall"), t(600));
    link.observe_pbx_profile(&pol, pbx("Available"), t(601), t(601));
    assert_eq!(
        link.tick(&pol, t(610)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
    link.observe_pbx_profile(&pol, pbx("Out of office"), t(620), t(620));
    link.observe_teams(&pol, p("Available", "Available"), t(700));
    assert_eq!(link.tick(&pol, t(800)).actions, vec![]);
}

#[test]
fn flapping_within_stable_writes_nothing_and_the_latest_stable_state_wins() {
    let (pol, mut link) = settled_3cx();
    let mut writes = Vec::new();
    for (i, teams) in [
        p("Busy", "InACall"),
        p("Available", "Available"),
        p("Busy", "InACall"),
    ]
    .into_iter()
    .enumerate()
    {
        writes.extend(
            link.observe_teams(&pol, teams, t(200 + 3 * i as i64))
                .actions,
        );
    }
    writes.extend(
        link.observe_teams(&pol, p("Available", "Available"), t(209))
            .actions,
    );
    writes.extend(link.tick(&pol, t(300)).actions);
    assert_eq!(
        writes,
        vec![],
        "Available was the state before the flapping"
    );
    link.observe_teams(&pol, p("DoNotDisturb", "Presenting"), t(400));
    link.observe_teams(&pol, p("Busy", "InAMeeting"), t(405));
    assert_eq!(link.tick(&pol, t(414)).actions, vec![]);
    assert_eq!(
        link.tick(&pol, t(415)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
}

#[test]
fn writes_are_rate_limited_and_coalesced_to_the_latest_never_dropped() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    link.observe_line(&pol, LineState::Idle, t(201));
    // The clear is due at 206 (hold) but the last write was at 200: it waits until 210.
    let step = link.tick(&pol, t(206));
    assert_eq!(step.actions, vec![]);
    assert_eq!(step.next_wake, Some(t(210)));
    assert_eq!(link.tick(&pol, t(210)).actions, vec![Action::ClearSession]);
    // A call right after waits its turn too, and is not lost.
    let step = link.observe_line(&pol, LineState::InCall, t(212));
    assert_eq!((step.actions, step.next_wake), (vec![], Some(t(220))));
    assert_eq!(link.tick(&pol, t(220)).actions, vec![busy_call()]);
}

#[test]
fn a_snapshot_after_reconnect_is_diffed_not_replayed() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    link.observe_teams(&pol, p("Busy", "InAMeeting"), t(200));
    link.tick(&pol, t(215));
    link.observe_pbx_profile(&pol, pbx("Away"), t(216), t(216));
    let step = link.observe_snapshot(&pol, LineState::InCall, Some(pbx("Away")), t(300), t(300));
    assert_eq!(step.actions, vec![]);
    assert!(
        link.owns_pbx_profile(t(300), &pol),
        "an agreeing snapshot is not a manual change"
    );
    // A snapshot that differs is a change like any other.
    let step = link.observe_snapshot(
        &pol,
        LineState::Idle,
        Some(pbx("Out of office")),
        t(400),
        t(400),
    );
    assert_eq!(step.actions, vec![]);
    assert!(!link.owns_pbx_profile(t(400), &pol));
    assert_eq!(link.tick(&pol, t(405)).actions, vec![Action::ClearSession]);
}

#[test]
fn a_fresh_link_clears_a_left_behind_session_once() {
    let pol = policy(Preset::ThreeCx);
    let mut link = Link::new();
    assert_eq!(
        link.session_may_be_left_behind(&pol, t(0)).actions,
        vec![Action::ClearSession]
    );
    assert_eq!(link.tick(&pol, t(100)).actions, vec![]);
    link.observe_line(&pol, LineState::Idle, t(101));
    assert_eq!(link.tick(&pol, t(200)).actions, vec![]);
}

#[test]
fn long_calls_repost_the_session_before_it_lapses() {
    let (pol, mut link) = settled_3cx();
    let step = link.observe_line(&pol, LineState::InCall, t(1000));
    assert_eq!(step.next_wake, Some(t(1000 + 50 * 60)));
    let mut posts = 0;
    let mut now = t(1000);
    // Five hours on the phone: longer than the 4 h Graph allows for one session.
    while now < t(1000 + 5 * 3600) {
        now = link.tick(&pol, now).next_wake.unwrap();
        posts += link
            .tick(&pol, now)
            .actions
            .iter()
            .filter(|a| **a == busy_call())
            .count();
    }
    assert_eq!(posts, 6, "every 50 minutes");
}

#[test]
fn the_link_survives_a_restart_with_its_ledger_and_ownership() {
    let (pol, mut link) = settled_3cx();
    link.observe_teams(&pol, p("Busy", "InACall"), t(200));
    link.tick(&pol, t(210));
    link.observe_pbx_profile(&pol, pbx("Away"), t(211), t(211));
    let stored = serde_json::to_string(&link).unwrap();
    let mut restored: Link = serde_json::from_str(&stored).unwrap();
    assert_eq!(restored, link);
    restored.observe_teams(&pol, p("Available", "Available"), t(300));
    assert_eq!(
        restored.tick(&pol, t(310)).actions,
        vec![Action::SetPbxProfile(pbx("Available"))]
    );
}

#[test]
fn session_expiry_must_be_within_what_graph_accepts() {
    assert_eq!(Settings::default().validate(), Ok(()));
    for secs in [299, 4 * 3600 + 1] {
        let s = Settings {
            session_expiry: Duration::from_secs(secs),
            ..Settings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("pbx.session_expiry:") && !err.contains('\n'),
            "{err}"
        );
    }
}

#[test]
fn vtx_writes_preferred_away_only_for_profiles_the_person_picks() {
    let pol = policy(Preset::Vtx);
    let mut link = Link::new();
    link.observe_snapshot(&pol, LineState::Idle, Some(pbx("Available")), t(0), t(0));
    link.observe_teams(&pol, p("Available", "Available"), t(0));
    link.tick(&pol, t(100));
    let step = link.observe_pbx_profile(&pol, pbx("On Break"), t(200), t(200));
    let away = Action::SetPreferred {
        availability: Availability::Away,
        activity: Activity::Away,
    };
    assert_eq!(step.actions, vec![away]);
    // Our preferred Away comes back; it must not turn the person's "On Break" into "Away".
    link.observe_teams(&pol, p("Away", "Away"), t(203));
    assert_eq!(link.tick(&pol, t(1000)).actions, vec![]);
    let step = link.observe_pbx_profile(&pol, pbx("Available"), t(1100), t(1100));
    assert_eq!(step.actions, vec![Action::ClearPreferred]);
    // A Teams meeting reaches the PBX, and our own profile write does not bounce back.
    link.observe_teams(&pol, p("Available", "Available"), t(1105));
    link.observe_teams(&pol, p("Busy", "InAMeeting"), t(1200));
    assert_eq!(
        link.tick(&pol, t(1210)).actions,
        vec![Action::SetPbxProfile(pbx("In a Meeting"))]
    );
    assert_eq!(
        link.observe_pbx_profile(&pol, pbx("In a Meeting"), t(1211), t(1211))
            .actions,
        vec![]
    );
}

#[test]
fn a_teams_call_read_after_our_clear_is_not_taken_for_our_echo() {
    let (pol, mut link) = settled_3cx();
    link.observe_line(&pol, LineState::InCall, t(200));
    link.observe_teams(&pol, p("Busy", "InACall"), t(201));
    link.observe_line(&pol, LineState::Idle, t(300));
    assert_eq!(link.tick(&pol, t(305)).actions, vec![Action::ClearSession]);
    // Polls (fresh reads, never late copies) show the clear, then a Teams call.
    link.observe_teams_read(&pol, p("Available", "Available"), t(306));
    link.observe_teams_read(&pol, p("Busy", "InACall"), t(308));
    let actions = link.tick(&pol, t(330)).actions;
    assert_eq!(actions, vec![Action::SetPbxProfile(Profile::new("Away"))]);
}

/// Issue 28, item 11, as the issue tells it: the person sets Away on the phone while Teams is
/// Available, takes a Teams call 15 s later, and the call ends. Shortly before, the sync had
/// put the extension back to Available after a meeting, and the profile poll (every 5 s)
/// saw the person's Away before it ever saw that write land. The sync went on believing
/// its own Available for the whole echo window, so the Teams call "put an Available
/// extension on Away" (the PBX already was: the person's Away, now taken for ours) and
/// its end PATCHed the extension back to Available: the person's own status lost.
#[test]
fn the_persons_away_set_on_the_phone_survives_a_teams_call_and_its_end() {
    let (pol, mut link) = settled_3cx();
    // A meeting: Away (ours), then back to Available once it ends.
    link.observe_teams(&pol, p("Busy", "InAMeeting"), t(200));
    assert_eq!(
        link.tick(&pol, t(210)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
    link.observe_pbx_profile(&pol, pbx("Away"), t(211), t(211));
    link.observe_teams(&pol, p("Available", "Available"), t(300));
    assert_eq!(
        link.tick(&pol, t(310)).actions,
        vec![Action::SetPbxProfile(pbx("Available"))]
    );
    // 2 s later the person presses Away on the phone; the next poll shows Away.
    let mut writes = Vec::new();
    writes.extend(
        link.observe_pbx_profile(&pol, pbx("Away"), t(315), t(315))
            .actions,
    );
    assert!(!link.owns_pbx_profile(t(315), &pol));
    // Teams is still Available; 15 s later a Teams call, which ends after 30 s.
    writes.extend(
        link.observe_teams(&pol, p("Busy", "InACall"), t(327))
            .actions,
    );
    for s in 328..357 {
        writes.extend(link.tick(&pol, t(s)).actions);
    }
    writes.extend(
        link.observe_teams(&pol, p("Available", "Available"), t(357))
            .actions,
    );
    for s in 358..700 {
        writes.extend(link.tick(&pol, t(s)).actions);
    }
    assert_eq!(writes, vec![], "the person's Away was overridden");
    assert!(!link.owns_pbx_profile(t(700), &pol));
}

/// The same timeline without anything of ours in flight: the person's Away, seen by a poll
/// before the Teams call, is left alone through the call and after it.
#[test]
fn the_persons_away_seen_before_a_teams_call_is_never_reverted() {
    let (pol, mut link) = settled_3cx();
    let mut writes = Vec::new();
    writes.extend(
        link.observe_pbx_profile(&pol, pbx("Away"), t(152), t(152))
            .actions,
    );
    writes.extend(
        link.observe_teams(&pol, p("Busy", "InACall"), t(165))
            .actions,
    );
    writes.extend(link.tick(&pol, t(175)).actions);
    writes.extend(
        link.observe_teams(&pol, p("Available", "Available"), t(195))
            .actions,
    );
    writes.extend(link.tick(&pol, t(205)).actions);
    writes.extend(link.tick(&pol, t(400)).actions);
    assert_eq!(writes, vec![]);
}

/// Our write superseded: when a poll after it shows something else, our value is no longer
/// what the PBX has, so it neither counts as current nor as ours.
#[test]
fn a_poll_showing_another_profile_after_our_write_supersedes_it() {
    let (pol, mut link) = settled_3cx();
    link.observe_teams(&pol, p("Busy", "InACall"), t(200));
    assert_eq!(
        link.tick(&pol, t(210)).actions,
        vec![Action::SetPbxProfile(pbx("Away"))]
    );
    assert!(link.owns_pbx_profile(t(210), &pol));
    // Before any poll shows our Away, the person picks Out of office.
    link.observe_pbx_profile(&pol, pbx("Out of office"), t(214), t(214));
    assert!(!link.owns_pbx_profile(t(215), &pol));
    link.observe_teams(&pol, p("Available", "Available"), t(300));
    assert_eq!(link.tick(&pol, t(400)).actions, vec![]);
}

/// A link stored by an older build (a pending PBX write as the pair `[profile, own]`) reads
/// the same, and is written back in that form.
#[test]
fn a_pending_pbx_write_is_stored_as_the_pair_it_always_was() {
    let pending = PendingProfile {
        profile: pbx("Away"),
        own: true,
    };
    let stored = serde_json::to_value(&pending).unwrap();
    assert_eq!(stored, serde_json::json!(["Away", true]));
    let back: PendingProfile = serde_json::from_value(stored).unwrap();
    assert_eq!(back, pending);
}
