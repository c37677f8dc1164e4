//! Tables of rule cases: parsing, validation messages, and both presets.

use super::*;

fn p(av: &str, ac: &str) -> Presence {
    Presence::new(av, ac)
}

fn pbx(name: &str) -> Profile {
    Profile::new(name)
}

fn set(rules: &Rules, teams: Presence, current: Option<&str>, owned: bool) -> Option<String> {
    let current = current.map(pbx);
    match rules.teams_to_pbx(&teams, current.as_ref(), owned) {
        Some(TeamsOutcome::SetPbx { profile, .. }) => Some(profile.to_string()),
        Some(TeamsOutcome::Ignore) | None => None,
    }
}

#[test]
fn every_preset_parses_and_describes_itself() {
    for preset in Preset::ALL {
        let rules = preset.rules();
        assert!(!rules.teams_to_pbx.is_empty(), "{}", preset.name());
        let text = rules.describe();
        assert!(text.contains("in_call -> session:Busy/InACall"), "{text}");
        assert_eq!(Preset::parse(&preset.name().to_uppercase()), Some(preset));
    }
}

#[test]
fn vtx_preset_maps_teams_states_like_the_vtx_sync() {
    let r = Preset::Vtx.rules();
    let cases = [
        (p("BeRightBack", "BeRightBack"), "On Break"),
        (p("Away", "Away"), "Away"),
        (p("Offline", "OffWork"), "Away"),
        (p("Offline", "Offline"), "Away"),
        (p("DoNotDisturb", "Presenting"), "Do Not Disturb"),
        (p("Busy", "InAMeeting"), "In a Meeting"),
        (p("Busy", "Busy"), "In a Meeting"),
        // Out of office wins over the availability rows.
        (p("Away", "OutOfOffice"), "Out of Office"),
        (p("DoNotDisturb", "OutOfOffice"), "Out of Office"),
        (p("Available", "Available"), "Available"),
    ];
    for (teams, want) in cases {
        assert_eq!(
            set(&r, teams.clone(), Some("Available"), false).as_deref(),
            Some(want),
            "{teams}"
        );
    }
    // A Teams call is not a meeting: the PBX is left alone.
    assert_eq!(
        set(&r, p("Busy", "InACall"), Some("Available"), false),
        None
    );
}

#[test]
fn vtx_preset_writes_preferred_only_for_its_profiles() {
    let r = Preset::Vtx.rules();
    for name in [
        "Away",
        "on break",
        "Do Not Disturb",
        "Out of Office",
        "Vacation",
        "Sick Leave",
    ] {
        assert_eq!(
            r.profile_verb(&pbx(name)),
            Some(&ProfileVerb::Preferred(p("Away", "Away"))),
            "{name}"
        );
    }
    assert_eq!(
        r.profile_verb(&pbx("Available")),
        Some(&ProfileVerb::ClearPreferred)
    );
    assert_eq!(r.profile_verb(&pbx("In a Meeting")), None);
    assert_eq!(r.line_verb(LineState::Ringing), &LineVerb::Ignore);
    assert_eq!(
        r.line_verb(LineState::Held),
        &LineVerb::Session(p("Busy", "InACall"))
    );
    assert_eq!(r.line_verb(LineState::Idle), &LineVerb::ClearSession);
}

#[test]
fn three_cx_preset_respects_the_current_profile_and_ownership() {
    let r = Preset::ThreeCx.rules();
    // Busy-ish states put an Available extension on Away ...
    for teams in [
        p("Busy", "InACall"),
        p("Busy", "InAMeeting"),
        p("DoNotDisturb", "Presenting"),
        p("BeRightBack", "BeRightBack"),
    ] {
        assert_eq!(
            set(&r, teams.clone(), Some("Available"), false).as_deref(),
            Some("Away"),
            "{teams}"
        );
        // ... and leave any other profile (the person's choice) alone.
        assert_eq!(
            set(&r, teams.clone(), Some("Out of office"), false),
            None,
            "{teams}"
        );
    }
    assert_eq!(
        r.teams_to_pbx(&p("Busy", "InACall"), Some(&pbx("Available")), false),
        Some(&TeamsOutcome::SetPbx {
            profile: pbx("Away"),
            own: true
        })
    );
    // Back to Available only when the Away is ours.
    assert_eq!(
        set(&r, p("Available", "Available"), Some("Away"), true).as_deref(),
        Some("Available")
    );
    assert_eq!(
        set(&r, p("Available", "Available"), Some("Away"), false),
        None
    );
    assert_eq!(
        r.teams_to_pbx(&p("Away", "Away"), Some(&pbx("Available")), false),
        Some(&TeamsOutcome::Ignore)
    );
    assert!(
        r.profile.is_empty(),
        "3cx never writes the preferred presence"
    );
}

#[test]
fn toml_tables_replace_the_preset_tables() {
    let doc = r#"
        [other]
        untouched = true
        [pbx]
        preset = "3cx"
        [[pbx.teams_to_pbx]]
        availability = "busy"
        activity = "InACall|InAConferenceCall"
        if_pbx = "Available"
        pbx = "Away"
        own = true
        [pbx.pbx_to_teams.line]
        in_call = "session:Busy/InACall"
        idle = "clear_session"
        [pbx.pbx_to_teams.profile]
        "Out of office" = "preferred:Away/Away"
    "#;
    let r = Rules::from_toml_str(doc).unwrap();
    assert_eq!(r.teams_to_pbx.len(), 1);
    assert_eq!(r.line.len(), 2);
    assert_eq!(r.line_verb(LineState::Dialing), &LineVerb::Ignore);
    assert_eq!(
        r.profile_verb(&pbx("OUT OF OFFICE")),
        Some(&ProfileVerb::Preferred(p("Away", "Away")))
    );
    assert_eq!(
        Rules::from_toml_str("[other]\nx = 1").unwrap(),
        Rules::default()
    );
}

#[test]
fn invalid_rules_name_the_rule_and_the_reason_on_one_line() {
    let cases = [
        (
            "[[pbx.teams_to_pbx]]\npbx = \"Away\"\n[[pbx.teams_to_pbx]]\navailability = \"Bussy\"\npbx = \"Away\"",
            "pbx.teams_to_pbx[1]: unknown availability `Bussy` in `Bussy`",
        ),
        (
            "[pbx.pbx_to_teams.line]\nin_call = \"session:Busy/InAMeeting\"",
            "pbx.pbx_to_teams.line.in_call: Busy/InAMeeting is not one of the five pairs Graph lets an app set: Available/Available, Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting",
        ),
        (
            "[pbx.pbx_to_teams.profile]\n\"Away\" = \"preferred:Away/OutOfOffice\"",
            "pbx.pbx_to_teams.profile.\"Away\": Away/OutOfOffice is not one of the six preferred pairs Graph accepts: Available/Available, Busy/Busy, DoNotDisturb/DoNotDisturb, BeRightBack/BeRightBack, Away/Away, Offline/OffWork",
        ),
        ("[pbx]\npreset = \"asterisk\"", "pbx.preset: unknown preset `asterisk` (known: vtx, 3cx)"),
        ("[[pbx.teams_to_pbx]]\navailability = \"Away\"", "pbx.teams_to_pbx[0]: needs `pbx = \"<profile>\"` or `action = \"ignore\"`"),
        ("[[pbx.teams_to_pbx]]\npbx = \"Away\"\naction = \"ignore\"", "pbx.teams_to_pbx[0]: has both `pbx` and `action`; pick one"),
        ("[pbx.pbx_to_teams.line]\nin_a_call = \"ignore\"", "pbx.pbx_to_teams.line.in_a_call: unknown line state (idle, ringing, dialing, in_call, held, unavailable)"),
    ];
    for (doc, want) in cases {
        let err = Rules::from_toml_str(doc).unwrap_err().to_string();
        assert_eq!(err, want, "{doc}");
    }
}

#[test]
fn unknown_keys_are_rejected_and_named() {
    let err = Rules::from_toml_str("[[pbx.teams_to_pbx]]\npbx = \"Away\"\nif_pxb = \"Available\"")
        .unwrap_err();
    assert_eq!(err.location, "pbx.teams_to_pbx[0]");
    assert!(err.reason.contains("unknown field `if_pxb`"), "{err}");
    let err = Rules::from_toml_str("[pbx]\npreset = \"vtx\"\nrules = []").unwrap_err();
    assert_eq!(err.location, "pbx");
    assert!(err.reason.contains("unknown field `rules`"), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn patterns_match_case_insensitively_with_wildcards_and_alternatives() {
    let pat = Pattern::activity("inacall | InAConferenceCall").unwrap();
    assert!(pat.matches("InACall") && pat.matches("inaconferencecall"));
    assert!(!pat.matches("InAMeeting"));
    assert!(Pattern::availability("*").unwrap().matches("Whatever"));
    assert_eq!(pat.to_string(), "InACall|InAConferenceCall");
    assert!(Pattern::availability("Busy||Away").is_err());
}
