//! The built-in rule presets, reproducing the behaviour of the systems they replace.
//!
//! They are written in the same TOML a user would write, so what `--help` shows, what the
//! docs show and what runs are one text; a unit test parses every preset.

/// A built-in rule set, chosen with `preset = "..."` in the `[pbx]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The hosted VTX VPBX (C5) and its profile names. The one preset that writes the
    /// person's *preferred* Teams presence: when the person picks Away, On Break, Do Not
    /// Disturb, Out of Office, Vacation or Sick Leave on the PBX, Teams shows Away, and
    /// picking Available on the PBX clears it again, as VTX's own sync does. Only status
    /// changes the person made on the PBX trigger it, never profiles we set.
    Vtx,
    /// 3CX V20 ("Available", "Away", "Out of office", ...). Teams calls and busy states put
    /// an Available extension on Away, and only an Away we set is put back to Available; a
    /// status the person chose on the phone is never touched.
    ThreeCx,
}

const VTX: &str = r#"
# Out of office wins over every availability row, so it comes first.
[[teams_to_pbx]]
activity = "OutOfOffice"
pbx = "Out of Office"
[[teams_to_pbx]]
availability = "BeRightBack"
pbx = "On Break"
[[teams_to_pbx]]
availability = "Away"
pbx = "Away"
[[teams_to_pbx]]
activity = "OffWork"
pbx = "Away"
[[teams_to_pbx]]
availability = "Offline"
pbx = "Away"
[[teams_to_pbx]]
availability = "DoNotDisturb"
pbx = "Do Not Disturb"
# A meeting, or a calendar time blocker (Busy/Busy).
[[teams_to_pbx]]
availability = "Busy"
activity = "InAMeeting|Busy"
pbx = "In a Meeting"
[[teams_to_pbx]]
availability = "Available"
pbx = "Available"

[pbx_to_teams.line]
dialing = "session:Busy/InACall"
in_call = "session:Busy/InACall"
held = "session:Busy/InACall"
ringing = "ignore"
idle = "clear_session"

[pbx_to_teams.profile]
"Available" = "clear_preferred"
"Away" = "preferred:Away/Away"
"On Break" = "preferred:Away/Away"
"Do Not Disturb" = "preferred:Away/Away"
"Out of Office" = "preferred:Away/Away"
"Vacation" = "preferred:Away/Away"
"Sick Leave" = "preferred:Away/Away"
"#;

const THREE_CX: &str = r#"
# Only an Available extension is put on Away, and we remember that we did it.
[[teams_to_pbx]]
availability = "Busy"
activity = "InACall|InAConferenceCall"
if_pbx = "Available"
pbx = "Away"
own = true
[[teams_to_pbx]]
availability = "Busy|DoNotDisturb|BeRightBack"
if_pbx = "Available"
pbx = "Away"
own = true
# Back to Available only if the Away is still the one we set.
[[teams_to_pbx]]
availability = "Available"
if_pbx = "Away"
if_owned = true
pbx = "Available"
# Teams goes Away by itself when the computer idles; that says nothing about the phone.
[[teams_to_pbx]]
availability = "Away"
action = "ignore"

[pbx_to_teams.line]
dialing = "session:Busy/InACall"
in_call = "session:Busy/InACall"
held = "session:Busy/InACall"
ringing = "ignore"
idle = "clear_session"
"#;

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 2] = [Preset::Vtx, Preset::ThreeCx];

    /// The name used in config (`vtx`, `3cx`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Vtx => "vtx",
            Preset::ThreeCx => "3cx",
        }
    }

    /// The preset with this name (case-insensitive).
    pub fn parse(name: &str) -> Option<Preset> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The known names, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Preset::name).join(", ")
    }

    /// The preset as TOML (the body of a `[pbx]` table).
    pub fn toml(self) -> &'static str {
        match self {
            Preset::Vtx => VTX,
            Preset::ThreeCx => THREE_CX,
        }
    }
}
