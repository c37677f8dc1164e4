//! The Azure functions this binary serves, their `function.json` files (embedded from
//! `functions/`, the one source of truth) and the packaging of deployable folders.

use std::path::{Path, PathBuf};

/// Which deployable set a function belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionSet {
    /// The cloud part.
    Cloud,
    /// The edge part, for hosts that can run the Functions host (x64, arm64).
    Edge,
}

/// How the host invokes a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// HTTP trigger. `forwarded` = HTTP in and HTTP out only, so the host forwards the raw
    /// request to `/api/...`; otherwise it sends a payload-mode envelope with `Data.req`.
    Http {
        /// Only `httpTrigger` + `http` bindings.
        forwarded: bool,
    },
    /// Timer trigger (`Data.timer`).
    Timer,
    /// Service Bus trigger (`Data.msg`).
    ServiceBus,
}

/// One function folder.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDef {
    /// Folder name = function name = payload-mode path.
    pub name: &'static str,
    /// Cloud or edge.
    pub set: FunctionSet,
    /// Trigger kind.
    pub trigger: Trigger,
    /// Has the `message` Service Bus output binding.
    pub publishes: bool,
    /// The function.json text.
    pub function_json: &'static str,
}

macro_rules! def {
    ($name:literal, $set:ident, $trigger:expr, $publishes:literal) => {
        FunctionDef {
            name: $name,
            set: FunctionSet::$set,
            trigger: $trigger,
            publishes: $publishes,
            function_json: include_str!(concat!("../../functions/", $name, "/function.json")),
        }
    };
}

/// Every function, in the original specification's order (`health` and `presence-get` are
/// additions, see the README's "Differences from the original specification").
pub const FUNCTIONS: &[FunctionDef] = &[
    def!(
        "auth-start",
        Cloud,
        Trigger::Http { forwarded: true },
        false
    ),
    def!("auth-end", Cloud, Trigger::Http { forwarded: true }, false),
    def!(
        "notifications",
        Cloud,
        Trigger::Http { forwarded: false },
        true
    ),
    def!("lifecycle", Cloud, Trigger::Http { forwarded: true }, false),
    def!("presence-refresh", Cloud, Trigger::Timer, true),
    def!("subscriptions-renew", Cloud, Trigger::Timer, false),
    def!("health", Cloud, Trigger::Http { forwarded: true }, false),
    def!(
        "presence-get",
        Cloud,
        Trigger::Http { forwarded: true },
        false
    ),
    def!(
        "pbx-events",
        Cloud,
        Trigger::Http { forwarded: true },
        false
    ),
    def!("hue-subscriber", Edge, Trigger::ServiceBus, false),
];

/// The host.json shared by both sets.
pub const HOST_JSON: &str = include_str!("../../host.json");

impl FunctionDef {
    /// The route template in its function.json (`presence/{userId}`), or its name when the
    /// file names none. Read from the embedded files once per process.
    pub fn route(&self) -> &'static str {
        static ROUTES: std::sync::OnceLock<Vec<(&'static str, String)>> =
            std::sync::OnceLock::new();
        let routes = ROUTES.get_or_init(|| {
            FUNCTIONS
                .iter()
                .map(|f| {
                    let route = serde_json::from_str::<serde_json::Value>(f.function_json)
                        .ok()
                        .and_then(|v| v["bindings"][0]["route"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| f.name.to_owned());
                    (f.name, route)
                })
                .collect()
        });
        routes
            .iter()
            .find(|(name, _)| *name == self.name)
            .map_or(self.name, |(_, route)| route.as_str())
    }
}

/// Looks a function up by name (case-insensitive, as the host's routing is).
pub fn find(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The HTTP function whose route template (`presence/{userId}`) matches `route`, a forwarded
/// request's path below `/api/` (compared segment by segment, without regard to case, as the
/// host's routing is; a `{parameter}` matches any one non-empty segment).
pub fn find_by_route(route: &str) -> Option<&'static FunctionDef> {
    let path: Vec<&str> = route.trim_end_matches('/').split('/').collect();
    FUNCTIONS
        .iter()
        .filter(|f| matches!(f.trigger, Trigger::Http { .. }))
        .find(|f| {
            let template: Vec<&str> = f.route().split('/').collect();
            template.len() == path.len()
                && template.iter().zip(&path).all(|(t, p)| {
                    if t.starts_with('{') && t.ends_with('}') {
                        !p.is_empty()
                    } else {
                        t.eq_ignore_ascii_case(p)
                    }
                })
        })
}

/// Writes a deployable folder: `host.json`, one folder per function of `set`, and the
/// executable `teams-presence` (copied from `binary`, mode 0755). `func start` runs in it.
pub fn package(set: FunctionSet, out: &Path, binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let host = out.join("host.json");
    std::fs::write(&host, HOST_JSON).with_context(|| format!("cannot write {}", host.display()))?;
    written.push(host);
    for f in FUNCTIONS.iter().filter(|f| f.set == set) {
        let dir = out.join(f.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("function.json");
        std::fs::write(&path, f.function_json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    let exe = out.join("teams-presence");
    std::fs::copy(binary, &exe)
        .with_context(|| format!("cannot copy {} to {}", binary.display(), exe.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    }
    written.push(exe);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn routes_come_from_the_function_json_files() {
        assert_eq!(find("presence-get").unwrap().route(), "presence/{userId}");
        assert_eq!(find("auth-end").unwrap().route(), "auth/end");
        // A timer names no route: its name stands in.
        assert_eq!(
            find("presence-refresh").unwrap().route(),
            "presence-refresh"
        );
    }

    #[test]
    fn function_json_files_match_the_registry() {
        for f in FUNCTIONS {
            let v: Value = serde_json::from_str(f.function_json).unwrap();
            let bindings = v["bindings"].as_array().unwrap();
            let types: Vec<&str> = bindings
                .iter()
                .map(|b| b["type"].as_str().unwrap())
                .collect();
            match f.trigger {
                Trigger::Http { forwarded } => {
                    assert_eq!(types[0], "httpTrigger", "{}", f.name);
                    assert_eq!(bindings[0]["name"], "req");
                    // The host forwards only functions with exactly httpTrigger + http.
                    assert_eq!(forwarded, types == ["httpTrigger", "http"], "{}", f.name);
                }
                Trigger::Timer => {
                    assert_eq!(types[0], "timerTrigger");
                    assert_eq!(bindings[0]["name"], "timer");
                    assert!(bindings[0]["schedule"].as_str().unwrap().starts_with('%'));
                }
                Trigger::ServiceBus => {
                    assert_eq!(types[0], "serviceBusTrigger");
                    assert_eq!(bindings[0]["name"], "msg");
                    assert_eq!(bindings[0]["dataType"], "binary");
                }
            }
            let out = bindings.iter().find(|b| b["type"] == "serviceBus");
            assert_eq!(out.is_some(), f.publishes, "{}", f.name);
            if let Some(out) = out {
                assert_eq!(out["name"], "message");
                assert_eq!(out["direction"], "out");
                assert_eq!(out["connection"], "ServiceBusConnection");
            }
        }
    }

    #[test]
    fn host_json_starts_the_handler() {
        let v: Value = serde_json::from_str(HOST_JSON).unwrap();
        assert_eq!(
            v["customHandler"]["description"]["defaultExecutablePath"],
            "teams-presence"
        );
        assert_eq!(v["customHandler"]["description"]["arguments"][0], "handler");
        assert_eq!(v["customHandler"]["enableForwardingHttpRequest"], true);
        assert_eq!(v["extensionBundle"]["version"], "[4.*, 5.0.0)");
    }
}
