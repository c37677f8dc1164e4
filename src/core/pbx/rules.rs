//! Mapping rules between Teams presence and PBX line states / status profiles.
//!
//! Two directions, kept apart on purpose (a rule in one direction never reads what the other
//! wrote, which is half of the loop prevention; the link's echo ledger is the other half):
//!
//! * **Teams → PBX**: an ordered list, first match wins. A rule matches on availability and
//!   activity patterns (`*`, `A|B`, case-insensitive) and optional conditions on the PBX
//!   side; it sets a PBX profile or says "ignore".
//! * **PBX → Teams**: a verb per line state (`session:A/B`, `clear_session`, `ignore`) and,
//!   strictly opt-in, a verb per PBX profile name (`preferred:A/B`, `clear_preferred`).
//!
//! Graph accepts only a few presence pairs for each kind of write, and silently ignores the
//! rest, so verbs are checked against those lists when the rules are loaded, not at the
//! first call.

use std::fmt;

use serde::Deserialize;

use super::model::{LineState, Profile};
use crate::core::presence::{Activity, Availability, Presence};

pub use super::presets::Preset;

/// The pairs Graph's `setPresence` accepts for an application session. Anything else
/// (InAMeeting, OutOfOffice, ...) has no effect, so it is refused at load time.
pub const SESSION_PAIRS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// The pairs Graph's `setUserPreferredPresence` accepts.
pub const PREFERRED_PAIRS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// A rule that cannot be used. `Display` is one line: where the rule is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct RuleError {
    /// Where, in config terms: `pbx.teams_to_pbx[2]`, `pbx.pbx_to_teams.line.in_call`, ...
    pub location: String,
    /// Why, in one line.
    pub reason: String,
}

impl RuleError {
    fn new(location: impl Into<String>, reason: impl fmt::Display) -> Self {
        // Serde and toml messages may span lines; the error must stay one log line.
        let reason = reason
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        RuleError {
            location: location.into(),
            reason,
        }
    }
}

/// A match pattern for availability or activity: `*`, or alternatives separated by `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Canonical spellings; empty means "anything".
    alternatives: Vec<String>,
}

impl Pattern {
    /// Matches every value.
    pub fn any() -> Self {
        Pattern {
            alternatives: Vec::new(),
        }
    }

    /// Parses an availability pattern; every alternative must be a known availability, so a
    /// typo is an error instead of a rule that silently never matches.
    pub fn availability(s: &str) -> Result<Self, String> {
        Self::parse(s, "availability", |a| match Availability::parse(a) {
            Availability::Other(_) => None,
            known => Some(known.as_str().to_owned()),
        })
    }

    /// Parses an activity pattern (same rules as [`Pattern::availability`]).
    pub fn activity(s: &str) -> Result<Self, String> {
        Self::parse(s, "activity", |a| match Activity::parse(a) {
            Activity::Other(_) => None,
            known => Some(known.as_str().to_owned()),
        })
    }

    fn parse(s: &str, what: &str, known: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        if s.trim() == "*" {
            return Ok(Self::any());
        }
        let mut alternatives = Vec::new();
        for alt in s.split('|').map(str::trim) {
            if alt.is_empty() {
                return Err(format!("empty alternative in {what} pattern `{s}`"));
            }
            match known(alt) {
                Some(canonical) => alternatives.push(canonical),
                None => return Err(format!("unknown {what} `{alt}` in `{s}`")),
            }
        }
        Ok(Pattern { alternatives })
    }

    /// True when `value` is one of the alternatives (case-insensitive) or the pattern is `*`.
    pub fn matches(&self, value: &str) -> bool {
        self.alternatives.is_empty()
            || self
                .alternatives
                .iter()
                .any(|a| a.eq_ignore_ascii_case(value.trim()))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.alternatives.is_empty() {
            f.write_str("*")
        } else {
            f.write_str(&self.alternatives.join("|"))
        }
    }
}

/// What a Teams → PBX rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamsOutcome {
    /// Set this PBX profile. With `own`, we remember that we set it, so an `if_owned` rule
    /// may revert it later (and only if nobody changed it since).
    SetPbx {
        /// The profile name, as the PBX spells it.
        profile: Profile,
        /// Whether we claim ownership of the profile we set.
        own: bool,
    },
    /// Leave the PBX alone (and stop looking at later rules).
    Ignore,
}

/// One Teams → PBX rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamsRule {
    /// Which availabilities it matches.
    pub availability: Pattern,
    /// Which activities it matches.
    pub activity: Pattern,
    /// Only when the PBX profile currently is this one.
    pub if_pbx: Option<Profile>,
    /// Only when the current PBX profile is one we set and nobody changed since.
    pub if_owned: bool,
    /// What to do.
    pub outcome: TeamsOutcome,
}

impl TeamsRule {
    /// True when the rule applies to this Teams presence and PBX situation.
    pub fn matches(&self, teams: &Presence, pbx: Option<&Profile>, owned: bool) -> bool {
        self.availability.matches(teams.availability.as_str())
            && self.activity.matches(teams.activity.as_str())
            && self.if_pbx.as_ref().is_none_or(|want| pbx == Some(want))
            && (!self.if_owned || owned)
    }
}

impl fmt::Display for TeamsRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.availability, self.activity)?;
        if let Some(p) = &self.if_pbx {
            write!(f, " if PBX is \"{p}\"")?;
        }
        if self.if_owned {
            f.write_str(" if we set it")?;
        }
        match &self.outcome {
            TeamsOutcome::SetPbx { profile, own } => {
                write!(f, " -> PBX \"{profile}\"")?;
                if *own {
                    f.write_str(" (owned)")?;
                }
                Ok(())
            }
            TeamsOutcome::Ignore => f.write_str(" -> ignore"),
        }
    }
}

/// What to do in Teams when the PBX line enters a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineVerb {
    /// `session:A/B`: setPresence through our application session.
    Session(Presence),
    /// `clear_session`: clearPresence of our session (after the hold-down).
    ClearSession,
    /// `ignore`: this state changes nothing (e.g. ringing: the person may not answer).
    Ignore,
}

impl LineVerb {
    /// Parses `session:Availability/Activity`, `clear_session` or `ignore`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("clear_session") {
            return Ok(LineVerb::ClearSession);
        }
        if t.eq_ignore_ascii_case("ignore") {
            return Ok(LineVerb::Ignore);
        }
        let Some(pair) = strip_prefix_ci(t, "session:") else {
            return Err(format!(
                "`{t}` is not a line verb (session:Availability/Activity, clear_session, ignore)"
            ));
        };
        let p = parse_pair(pair, &SESSION_PAIRS, "the five pairs Graph lets an app set")?;
        Ok(LineVerb::Session(p))
    }
}

impl fmt::Display for LineVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineVerb::Session(p) => write!(f, "session:{p}"),
            LineVerb::ClearSession => f.write_str("clear_session"),
            LineVerb::Ignore => f.write_str("ignore"),
        }
    }
}

/// What to do in Teams when the person changes their PBX profile (opt-in only: these writes
/// overwrite the status the person chose in Teams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileVerb {
    /// `preferred:A/B`: setUserPreferredPresence.
    Preferred(Presence),
    /// `clear_preferred`: clearUserPreferredPresence.
    ClearPreferred,
}

impl ProfileVerb {
    /// Parses `preferred:Availability/Activity` or `clear_preferred`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("clear_preferred") {
            return Ok(ProfileVerb::ClearPreferred);
        }
        let Some(pair) = strip_prefix_ci(t, "preferred:") else {
            return Err(format!(
                "`{t}` is not a profile verb (preferred:Availability/Activity, clear_preferred)"
            ));
        };
        let p = parse_pair(
            pair,
            &PREFERRED_PAIRS,
            "the six preferred pairs Graph accepts",
        )?;
        Ok(ProfileVerb::Preferred(p))
    }
}

impl fmt::Display for ProfileVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileVerb::Preferred(p) => write!(f, "preferred:{p}"),
            ProfileVerb::ClearPreferred => f.write_str("clear_preferred"),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim())
}

fn parse_pair(pair: &str, allowed: &[(&str, &str)], what: &str) -> Result<Presence, String> {
    let list = || {
        allowed
            .iter()
            .map(|(a, b)| format!("{a}/{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((av, ac)) = pair.split_once('/') else {
        return Err(format!(
            "`{pair}` is not Availability/Activity; use one of {}",
            list()
        ));
    };
    let found = allowed
        .iter()
        .find(|(a, b)| a.eq_ignore_ascii_case(av.trim()) && b.eq_ignore_ascii_case(ac.trim()));
    match found {
        Some((a, b)) => Ok(Presence::new(a, b)),
        None => Err(format!(
            "{}/{} is not one of {what}: {}",
            av.trim(),
            ac.trim(),
            list()
        )),
    }
}

/// A complete, validated rule set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Teams → PBX, first match wins.
    pub teams_to_pbx: Vec<TeamsRule>,
    /// PBX line state → Teams; a state without an entry is ignored.
    pub line: Vec<(LineState, LineVerb)>,
    /// PBX profile (changed by the person) → Teams preferred presence; opt-in.
    pub profile: Vec<(Profile, ProfileVerb)>,
}

impl Rules {
    /// The first Teams → PBX rule that applies, if any. `owned` says whether the current
    /// PBX profile is one we set and nobody changed since.
    pub fn teams_to_pbx(
        &self,
        teams: &Presence,
        pbx: Option<&Profile>,
        owned: bool,
    ) -> Option<&TeamsOutcome> {
        self.teams_to_pbx
            .iter()
            .find(|r| r.matches(teams, pbx, owned))
            .map(|r| &r.outcome)
    }

    /// The verb for a line state (`Ignore` when the rules do not mention it).
    pub fn line_verb(&self, state: LineState) -> &LineVerb {
        self.line
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(&LineVerb::Ignore, |(_, v)| v)
    }

    /// The verb for a profile the person selected on the PBX, if the rules opt in to one.
    pub fn profile_verb(&self, profile: &Profile) -> Option<&ProfileVerb> {
        self.profile
            .iter()
            .find(|(p, _)| p == profile)
            .map(|(_, v)| v)
    }

    /// Reads the `[pbx]` table of a TOML document (other tables are left to their owners).
    /// Without a `[pbx]` table there are no rules at all.
    pub fn from_toml_str(doc: &str) -> Result<Rules, RuleError> {
        let value: toml::Table =
            toml::from_str(doc).map_err(|e| RuleError::new("pbx", e.message()))?;
        match value.get("pbx") {
            None => Ok(Rules::default()),
            Some(pbx) => Rules::from_toml_value(pbx.clone()),
        }
    }

    /// Builds and validates rules from the value of the `[pbx]` table.
    pub fn from_toml_value(pbx: toml::Value) -> Result<Rules, RuleError> {
        let raw = RawPbx::deserialize(pbx).map_err(|e| RuleError::new("pbx", e.message()))?;
        let mut rules = match &raw.preset {
            None => Rules::default(),
            Some(name) => Preset::parse(name)
                .ok_or_else(|| {
                    RuleError::new(
                        "pbx.preset",
                        format!("unknown preset `{name}` (known: {})", Preset::names()),
                    )
                })?
                .rules(),
        };
        if let Some(list) = raw.teams_to_pbx {
            rules.teams_to_pbx = list
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    teams_rule(v).map_err(|r| RuleError::new(format!("pbx.teams_to_pbx[{i}]"), r))
                })
                .collect::<Result<_, _>>()?;
        }
        let p2t = raw.pbx_to_teams.unwrap_or_default();
        if let Some(line) = p2t.line {
            rules.line = line_table(line)?;
        }
        if let Some(profile) = p2t.profile {
            rules.profile = profile_table(profile)?;
        }
        Ok(rules)
    }

    /// The rules as text, one per line, for documentation and `--help`.
    pub fn describe(&self) -> String {
        let mut out = String::from("Teams -> PBX (first match wins):\n");
        for (i, r) in self.teams_to_pbx.iter().enumerate() {
            out.push_str(&format!("  {}. {r}\n", i + 1));
        }
        out.push_str("PBX line -> Teams:\n");
        for (s, v) in &self.line {
            out.push_str(&format!("  {} -> {v}\n", s.as_str()));
        }
        if !self.profile.is_empty() {
            out.push_str("PBX profile set by the person -> Teams preferred presence:\n");
            for (p, v) in &self.profile {
                out.push_str(&format!("  \"{p}\" -> {v}\n"));
            }
        }
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPbx {
    preset: Option<String>,
    teams_to_pbx: Option<Vec<toml::Value>>,
    pbx_to_teams: Option<RawPbxToTeams>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPbxToTeams {
    line: Option<toml::Table>,
    profile: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamsRule {
    availability: Option<String>,
    activity: Option<String>,
    if_pbx: Option<String>,
    #[serde(default)]
    if_owned: bool,
    pbx: Option<String>,
    #[serde(default)]
    own: bool,
    action: Option<String>,
}

// Each rule is deserialised on its own so an unknown key names the rule it is in.
fn teams_rule(v: toml::Value) -> Result<TeamsRule, String> {
    let raw = RawTeamsRule::deserialize(v).map_err(|e| e.message().to_owned())?;
    let availability = Pattern::availability(raw.availability.as_deref().unwrap_or("*"))?;
    let activity = Pattern::activity(raw.activity.as_deref().unwrap_or("*"))?;
    let if_pbx = raw.if_pbx.as_deref().map(profile_name).transpose()?;
    let outcome = match (raw.pbx, raw.action.as_deref()) {
        (Some(_), Some(_)) => return Err("has both `pbx` and `action`; pick one".into()),
        (Some(p), None) => TeamsOutcome::SetPbx {
            profile: profile_name(&p)?,
            own: raw.own,
        },
        (None, Some(a)) if a.trim().eq_ignore_ascii_case("ignore") => {
            if raw.own {
                return Err("`own` needs `pbx`: an ignore rule sets nothing to own".into());
            }
            TeamsOutcome::Ignore
        }
        (None, Some(a)) => return Err(format!("action `{a}` is unknown (only `ignore`)")),
        (None, None) => return Err("needs `pbx = \"<profile>\"` or `action = \"ignore\"`".into()),
    };
    Ok(TeamsRule {
        availability,
        activity,
        if_pbx,
        if_owned: raw.if_owned,
        outcome,
    })
}

fn profile_name(s: &str) -> Result<Profile, String> {
    if s.trim().is_empty() {
        Err("a PBX profile name is empty".into())
    } else {
        Ok(Profile::new(s.trim()))
    }
}

fn line_table(t: toml::Table) -> Result<Vec<(LineState, LineVerb)>, RuleError> {
    let mut out: Vec<(LineState, LineVerb)> = Vec::new();
    for (key, value) in t {
        let loc = format!("pbx.pbx_to_teams.line.{key}");
        let state = LineState::parse(&key).ok_or_else(|| {
            RuleError::new(
                &loc,
                "unknown line state (idle, ringing, dialing, in_call, held, unavailable)",
            )
        })?;
        let text = value
            .as_str()
            .ok_or_else(|| RuleError::new(&loc, "must be a string"))?;
        let verb = LineVerb::parse(text).map_err(|r| RuleError::new(&loc, r))?;
        if out.iter().any(|(s, _)| *s == state) {
            return Err(RuleError::new(&loc, "line state given twice"));
        }
        out.push((state, verb));
    }
    Ok(out)
}

fn profile_table(t: toml::Table) -> Result<Vec<(Profile, ProfileVerb)>, RuleError> {
    let mut out: Vec<(Profile, ProfileVerb)> = Vec::new();
    for (key, value) in t {
        let loc = format!("pbx.pbx_to_teams.profile.\"{key}\"");
        let profile = profile_name(&key).map_err(|r| RuleError::new(&loc, r))?;
        let text = value
            .as_str()
            .ok_or_else(|| RuleError::new(&loc, "must be a string"))?;
        let verb = ProfileVerb::parse(text).map_err(|r| RuleError::new(&loc, r))?;
        // Profile names compare case-insensitively, so "Away" and "away" would collide.
        if out.iter().any(|(p, _)| *p == profile) {
            return Err(RuleError::new(
                &loc,
                "profile given twice (names ignore case)",
            ));
        }
        out.push((profile, verb));
    }
    Ok(out)
}

impl Preset {
    /// The preset's validated rules. (Here rather than in `presets`, so the preset texts
    /// do not depend on the rule parser that reads them.)
    pub fn rules(self) -> Rules {
        let value: toml::Value = toml::from_str(self.toml()).expect("preset TOML parses");
        Rules::from_toml_value(value).expect("preset rules are valid")
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
