//! What a bridge has, whichever API it speaks: its lamps (with what each can show and
//! whether it answers) and its rooms, zones and groups (with the lamps in them). `v1.rs` and
//! `v2.rs` read their JSON into an [`Inventory`]; everything here is pure: how a
//! `HUE_TARGETS` entry resolves to what a command is sent to, and how a target is described
//! to people (`hue list`, `doctor`).
//!
//! Targets are resolved the same way on both APIs. `light:N`, `room:N`, `zone:N` and
//! `group:N` with a number are the v1 numbers, which a v2 bridge keeps as each resource's
//! `id_v1` (`/lights/N`, `/groups/N`), so targets written for one API keep working on the
//! other; a v2 UUID names the light, room, zone or grouped_light itself. `group:0` is every
//! light. A room or zone is commanded through its `grouped_light`: one the bridge gives none
//! to (it has no lights) cannot be a target.

use crate::config::HueTarget;
use crate::core::lights::{Palette, MIREK_RANGE};

/// One lamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lamp {
    /// What the API addresses: the v1 number, or the v2 UUID.
    pub id: String,
    /// The v1 number (`72`), also on a v2 bridge (from `id_v1`), when it has one.
    pub number: Option<String>,
    /// The name in the Hue app.
    pub name: String,
    /// What it can show.
    pub palette: Palette,
    /// Why it may not show what it is sent (`connectivity_issue`, `not reachable`), if so.
    pub problem: Option<String>,
}

/// What kind of group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A room (each light in one room).
    Room,
    /// A zone (any lights, across rooms).
    Zone,
    /// Another v1 group (a light group, an entertainment area).
    Group,
    /// Every light (`group:0`).
    Home,
}

impl GroupKind {
    /// As written in `HUE_TARGETS`.
    pub fn word(self) -> &'static str {
        match self {
            GroupKind::Room => "room",
            GroupKind::Zone => "zone",
            GroupKind::Group | GroupKind::Home => "group",
        }
    }
}

/// A room, zone or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Room, zone, ...
    pub kind: GroupKind,
    /// The v1 number, or the v2 room/zone UUID.
    pub id: String,
    /// The v1 number, also on a v2 bridge (from `id_v1` "/groups/N").
    pub number: Option<String>,
    /// The name in the Hue app.
    pub name: String,
    /// What a command goes to: the v1 group number, or the v2 grouped_light UUID; `None`
    /// when the bridge gives it none.
    pub commanded_by: Option<String>,
    /// The ids of its lamps.
    pub lamps: Vec<String>,
    /// What the bridge says the group accepts, for a group whose lamps are not known.
    pub palette_hint: Option<Palette>,
}

/// A bridge's lamps and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Lamps, in the bridge's order.
    pub lamps: Vec<Lamp>,
    /// Rooms, zones, groups, in the bridge's order.
    pub groups: Vec<Group>,
}

/// A `HUE_TARGETS` entry the bridge has, and what commands to it go to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// As configured.
    pub target: HueTarget,
    /// What a command goes to.
    pub endpoint: Endpoint,
    /// Its name in the Hue app.
    pub name: String,
    /// `light`, `room`, `zone`, `group`.
    pub kind: &'static str,
    /// What is sent to it.
    pub palette: Palette,
    /// Its lamps (the lamp itself for a light).
    pub lamps: Vec<Lamp>,
}

impl Inventory {
    fn lamp(&self, id: &str) -> Option<&Lamp> {
        self.lamps.iter().find(|l| l.id == id)
    }

    fn lamps_of(&self, g: &Group) -> Vec<Lamp> {
        g.lamps
            .iter()
            .filter_map(|id| self.lamp(id))
            .cloned()
            .collect()
    }

    /// Resolves a target; the error names it and says what the bridge has instead.
    pub fn resolve(&self, target: &HueTarget) -> Result<Resolved, String> {
        match target {
            HueTarget::Light(id) => {
                let lamp = self
                    .lamps
                    .iter()
                    .find(|l| l.id == *id || l.number.as_deref() == Some(id.as_str()))
                    .ok_or_else(|| {
                        format!(
                            "{target}: no such light on this bridge (lights: {}; see `teams-presence hue list`)",
                            known(self.lamps.iter().map(|l| l.number.as_deref().unwrap_or(&l.id)))
                        )
                    })?;
                Ok(Resolved {
                    target: target.clone(),
                    endpoint: Endpoint::Light(lamp.id.clone()),
                    name: lamp.name.clone(),
                    kind: "light",
                    palette: lamp.palette,
                    lamps: vec![lamp.clone()],
                })
            }
            HueTarget::Room(id) | HueTarget::Zone(id) | HueTarget::Group(id) => {
                let wanted = match target {
                    HueTarget::Room(_) => Some(GroupKind::Room),
                    HueTarget::Zone(_) => Some(GroupKind::Zone),
                    _ => None,
                };
                let group = self
                    .groups
                    .iter()
                    .find(|g| {
                        g.id == *id
                            || g.number.as_deref() == Some(id.as_str())
                            || g.commanded_by.as_deref() == Some(id.as_str())
                    })
                    .ok_or_else(|| {
                        let same = self
                            .groups
                            .iter()
                            .filter(|g| wanted.is_none_or(|k| g.kind == k))
                            .map(|g| g.number.as_deref().unwrap_or(&g.id));
                        let what = wanted.map_or("group", GroupKind::word);
                        format!(
                            "{target}: no such {what} on this bridge ({what}s: {}; see `teams-presence hue list`)",
                            known(same)
                        )
                    })?;
                let Some(endpoint) = group.commanded_by.clone() else {
                    return Err(format!(
                        "{target} ({}): the bridge lists no grouped_light for this {}, so it cannot be commanded; target its lights instead",
                        group.name,
                        group.kind.word(),
                    ));
                };
                let lamps = self.lamps_of(group);
                Ok(Resolved {
                    target: target.clone(),
                    endpoint: Endpoint::Group(endpoint),
                    name: group.name.clone(),
                    kind: group.kind.word(),
                    palette: group_palette(&lamps, group.palette_hint),
                    lamps,
                })
            }
        }
    }

    /// One line per lamp and group, for `hue list`: the target as `HUE_TARGETS` takes it
    /// (the v1 number when there is one), its name, and what it is and can show. Groups the
    /// bridge gives no grouped_light come last, their target marked with `# `.
    pub fn listing(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for l in &self.lamps {
            out.push((
                format!("light:{}", l.number.as_deref().unwrap_or(&l.id)),
                l.name.clone(),
                describe_lamp(l),
            ));
        }
        let mut unusable = Vec::new();
        for g in &self.groups {
            let target = format!("{}:{}", g.kind.word(), g.number.as_deref().unwrap_or(&g.id));
            let lamps = self.lamps_of(g);
            if g.commanded_by.is_none() {
                unusable.push((
                    format!("# {target}"),
                    g.name.clone(),
                    format!(
                        "not a target: the bridge lists no grouped_light for this {}{}",
                        g.kind.word(),
                        members(&lamps)
                    ),
                ));
                continue;
            }
            let palette = group_palette(&lamps, g.palette_hint);
            let detail = if lamps.is_empty() {
                format!(
                    "{}, no lights: commands to it change nothing",
                    g.kind.word()
                )
            } else {
                format!(
                    "{}{}: {}",
                    g.kind.word(),
                    members(&lamps),
                    describe_group(palette, &lamps)
                )
            };
            out.push((target, g.name.clone(), detail));
        }
        out.extend(unusable);
        out
    }
}

fn known<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let ids: Vec<&str> = ids.collect();
    match ids.len() {
        0 => "none".into(),
        n if n > 12 => format!("{}, … {} in all", ids[..12].join(", "), n),
        _ => ids.join(", "),
    }
}

/// ", 2 lights (Light 7, Light 2)" or ", no lights".
fn members(lamps: &[Lamp]) -> String {
    match lamps.len() {
        0 => ", no lights".into(),
        1 => format!(", 1 light ({})", lamps[0].name),
        n => format!(
            ", {n} lights ({})",
            lamps
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What a group's command can carry: what its best lamp shows (the bridge accepts colour
/// for a room with any colour lamp); whites within the range every white lamp in it has.
/// Without known lamps, what the bridge says the group accepts, else colour.
pub fn group_palette(lamps: &[Lamp], hint: Option<Palette>) -> Palette {
    let Some(best) = lamps.iter().map(|l| l.palette).max_by_key(|p| p.rank()) else {
        return hint.unwrap_or(Palette::Colour);
    };
    if let Palette::White { .. } = best {
        let (mut lo, mut hi) = MIREK_RANGE;
        for l in lamps {
            if let Palette::White { coolest, warmest } = l.palette {
                lo = lo.max(coolest);
                hi = hi.min(warmest);
            }
        }
        return if lo <= hi {
            Palette::White {
                coolest: lo,
                warmest: hi,
            }
        } else {
            Palette::white(MIREK_RANGE.0, MIREK_RANGE.1)
        };
    }
    best
}

fn kelvin(mirek: u16) -> u32 {
    (1_000_000.0 / f64::from(mirek.max(1)) / 10.0).round() as u32 * 10
}

/// What a lamp with this palette can and cannot show, in words.
pub fn describe_palette(p: Palette) -> String {
    match p {
        Palette::Colour => "colour: shows every state's colour and brightness".into(),
        Palette::White { coolest, warmest } => format!(
            "white ambiance ({}–{} K): cannot show colour; shows each state as a warm or cool white at its own brightness",
            kelvin(warmest),
            kelvin(coolest)
        ),
        Palette::Dimmable => {
            "dimmable only: cannot show colour; shows each state at its own brightness".into()
        }
        Palette::OnOff => {
            "on/off only: shows only whether a state turns it on (no colour, no brightness)".into()
        }
    }
}

/// A lamp in words: what it can show, and why it may not.
pub fn describe_lamp(l: &Lamp) -> String {
    match &l.problem {
        None => describe_palette(l.palette),
        Some(p) => format!(
            "{}; {p}: the bridge takes commands for it, but they may not have effect",
            describe_palette(l.palette)
        ),
    }
}

/// A target in words: what is sent to it, the lamps in it that cannot show that, the lamps
/// that may not answer (for a light: the lamp itself).
pub fn describe_group(palette: Palette, lamps: &[Lamp]) -> String {
    if lamps.is_empty() {
        return "no lights in it: commands to it change nothing".into();
    }
    if let [only] = lamps {
        if only.palette == palette {
            return describe_lamp(only);
        }
    }
    let mut out = describe_palette(palette);
    let weaker: Vec<&str> = lamps
        .iter()
        .filter(|l| l.palette.rank() < palette.rank())
        .map(|l| l.name.as_str())
        .collect();
    if !weaker.is_empty() {
        out.push_str(&format!(
            "; {} cannot show that (target them as lights of their own to give them a white per state)",
            weaker.join(", ")
        ));
    }
    let troubled: Vec<String> = lamps
        .iter()
        .filter_map(|l| l.problem.as_ref().map(|p| format!("{} ({p})", l.name)))
        .collect();
    if !troubled.is_empty() {
        out.push_str(&format!(
            "; may not answer: {} (commands are taken, with a warning)",
            troubled.join(", ")
        ));
    }
    out
}

/// A resolved target: what one PUT goes to. The kind decides the rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// v1 `lights/{id}/state` or v2 `light/{id}`.
    Light(String),
    /// v1 `groups/{id}/action` or v2 `grouped_light/{id}`.
    Group(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lamp(id: &str, n: &str, palette: Palette) -> Lamp {
        Lamp {
            id: id.into(),
            number: Some(n.into()),
            name: format!("Lamp {n}"),
            palette,
            problem: None,
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            lamps: vec![
                lamp("uuid-1", "1", Palette::Colour),
                lamp("uuid-2", "2", Palette::white(153, 454)),
                lamp("uuid-3", "3", Palette::white(158, 495)),
            ],
            groups: vec![
                Group {
                    kind: GroupKind::Room,
                    id: "room-uuid".into(),
                    number: Some("4".into()),
                    name: "Office".into(),
                    commanded_by: Some("gl-4".into()),
                    lamps: vec!["uuid-1".into(), "uuid-2".into()],
                    palette_hint: None,
                },
                Group {
                    kind: GroupKind::Zone,
                    id: "zone-uuid".into(),
                    number: Some("5".into()),
                    name: "Shelf".into(),
                    commanded_by: None,
                    lamps: vec!["uuid-2".into(), "uuid-3".into()],
                    palette_hint: None,
                },
            ],
        }
    }

    #[test]
    fn targets_resolve_by_number_or_id() {
        let inv = inventory();
        let r = inv.resolve(&HueTarget::Light("2".into())).unwrap();
        assert_eq!(r.endpoint, Endpoint::Light("uuid-2".into()));
        assert_eq!(r.palette, Palette::white(153, 454));
        let r = inv.resolve(&HueTarget::Light("uuid-1".into())).unwrap();
        assert_eq!(r.endpoint, Endpoint::Light("uuid-1".into()));
        for t in [
            HueTarget::Room("4".into()),
            HueTarget::Room("room-uuid".into()),
            HueTarget::Group("gl-4".into()),
            HueTarget::Group("4".into()),
        ] {
            let r = inv.resolve(&t).unwrap();
            assert_eq!(r.endpoint, Endpoint::Group("gl-4".into()), "{t}");
            assert_eq!(r.palette, Palette::Colour, "{t}");
            assert_eq!(r.lamps.len(), 2);
        }
    }

    #[test]
    fn a_missing_target_and_a_group_without_grouped_light_are_named() {
        let inv = inventory();
        let e = inv.resolve(&HueTarget::Room("7".into())).unwrap_err();
        assert!(
            e.starts_with("room:7: no such room on this bridge (rooms: 4;"),
            "{e}"
        );
        let e = inv.resolve(&HueTarget::Light("9".into())).unwrap_err();
        assert!(e.contains("lights: 1, 2, 3"), "{e}");
        let e = inv.resolve(&HueTarget::Zone("5".into())).unwrap_err();
        assert!(
            e.starts_with("zone:5 (Shelf): the bridge lists no grouped_light for this zone"),
            "{e}"
        );
    }

    #[test]
    fn a_group_of_white_lamps_gets_the_range_they_share() {
        let inv = inventory();
        let whites = inv.lamps_of(&inv.groups[1]);
        assert_eq!(
            group_palette(&whites, None),
            Palette::White {
                coolest: 158,
                warmest: 454
            }
        );
        assert_eq!(
            group_palette(&[], Some(Palette::Dimmable)),
            Palette::Dimmable
        );
        assert_eq!(group_palette(&[], None), Palette::Colour);
    }

    #[test]
    fn the_listing_marks_groups_that_cannot_be_targets_and_names_their_lights() {
        let rows = inventory().listing();
        let row = |t: &str| rows.iter().find(|r| r.0 == t).unwrap().2.clone();
        assert!(row("light:2").starts_with("white ambiance (2200–6540 K): cannot show colour"));
        let office = row("room:4");
        assert!(
            office.starts_with("room, 2 lights (Lamp 1, Lamp 2): colour"),
            "{office}"
        );
        assert!(office.contains("Lamp 2 cannot show that"), "{office}");
        assert_eq!(rows.last().unwrap().0, "# zone:5");
        assert!(rows.last().unwrap().2.contains("2 lights (Lamp 2, Lamp 3)"));
    }
}
