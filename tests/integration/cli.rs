//! The binary's contract with a person at a terminal: `--help` everywhere, one-line errors
//! that name the setting, exit code 2 for configuration and no panics.

use std::process::{Command, Output};

use crate::support;

fn run(args: &[&str], env: &[(&str, &str)], cwd: &std::path::Path) -> Output {
    let mut cmd = Command::new(support::binary());
    cmd.args(args).env_clear().current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    lines[0].to_owned()
}

#[test]
fn every_command_answers_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["handler", "--help"],
        vec!["serve", "--help"],
        vec!["subscribe", "--help"],
        vec!["healthcheck", "--help"],
        vec!["login", "--help"],
        vec!["hue", "--help"],
        vec!["hue", "pair", "--help"],
        vec!["hue", "discover", "--help"],
        vec!["hue", "list", "--help"],
        vec!["hue", "test", "--help"],
        vec!["users", "--help"],
        vec!["users", "remove", "--help"],
        vec!["doctor", "--help"],
        vec!["package", "--help"],
    ] {
        let out = run(&args, &[], dir.path());
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn a_wrong_setting_is_one_line_naming_it_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (&["serve"], &[("POLL_INTERVAL", "often")], "POLL_INTERVAL"),
        (&["serve"], &[("STORE", "mongodb")], "STORE"),
        (&["serve"], &[("GRAPH_ENDPOINT", "graph")], "GRAPH_ENDPOINT"),
        (
            &["serve"],
            &[("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=")],
            "TOKEN_ENCRYPTION_KEY",
        ),
        (
            &["serve"],
            &[("STORE", "table")],
            "TABLES_CONNECTION_STRING",
        ),
        (&["handler"], &[], "FUNCTIONS_CUSTOMHANDLER_PORT"),
        (&["serve", "--config", "missing.toml"], &[], "--config"),
        (&["users"], &[("HUE_TARGETS", "bulb:1")], "HUE_TARGETS"),
    ];
    for (args, env, setting) in cases {
        let out = run(args, env, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let line = one_line_error(&out);
        assert!(line.starts_with("error: setting "), "{line}");
        assert!(line.contains(setting), "{line}");
        // The secret value is never echoed.
        assert!(!line.contains("c2hvcnQ="), "{line}");
    }
}

#[test]
fn a_broken_toml_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("teams-presence.toml"),
        "POLL_INTERVAL = [unterminated",
    )
    .unwrap();
    let out = run(&["serve"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let line = one_line_error(&out);
    assert!(line.contains("teams-presence.toml"), "{line}");
}

#[test]
fn users_lists_nobody_on_a_fresh_store_and_remove_of_a_stranger_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["users", "--data-dir", "d"], &[], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No users"));
    let out = run(
        &["users", "--data-dir", "d", "remove", "nobody"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("no user with id nobody"));
}

#[test]
fn package_writes_a_folder_the_functions_host_can_run() {
    let dir = tempfile::tempdir().unwrap();
    for (set, expected) in [
        (
            "cloud",
            vec![
                "auth-start",
                "auth-end",
                "notifications",
                "lifecycle",
                "presence-refresh",
                "subscriptions-renew",
                "health",
                "presence-get",
                "pbx-events",
            ],
        ),
        ("edge", vec!["hue-subscriber"]),
    ] {
        let out_dir = dir.path().join(set);
        let out = run(
            &["package", set, "--out", out_dir.to_str().unwrap()],
            &[],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // host.json at the root names the executable that sits beside it.
        let host: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("host.json")).unwrap())
                .unwrap();
        let exe = host["customHandler"]["description"]["defaultExecutablePath"]
            .as_str()
            .unwrap();
        let exe_path = out_dir.join(exe);
        assert!(exe_path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&exe_path).unwrap().permissions().mode() & 0o111,
                0o111
            );
        }
        let mut folders: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("function.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        expected.sort();
        assert_eq!(folders, expected, "{set}");
        // Every function.json parses and has bindings.
        for f in &folders {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out_dir.join(f).join("function.json")).unwrap(),
            )
            .unwrap();
            assert!(!v["bindings"].as_array().unwrap().is_empty());
        }
    }
}

/// Issue 13, item 10: in tenant mode AZURE_TENANT_ID is the one tenant whose users are
/// followed with app credentials; a domain or `common`/`organizations` there is a mistake
/// (and an authority any tenant could sign in to).
#[test]
fn tenant_mode_requires_a_guid_tenant_id() {
    use teams_presence::config::{Settings, Sources};
    let parse = |tenant: &str| {
        Settings::parse(&Sources::from_map(
            [
                ("TENANT_USERS", "00000000-0000-4000-8000-000000000001"),
                ("AZURE_TENANT_ID", tenant),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ))
    };
    for bad in ["organizations", "common", "contoso.onmicrosoft.com"] {
        let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.to_string().contains("AZURE_TENANT_ID"), "{e}");
    }
    assert!(parse("72f988bf-86f1-41af-91ab-2d7cd011db47").is_ok());
}

/// Only the handler runs with a setting App Service left unresolved (issue 27); every other
/// command stops at once with that setting's line instead of reading the reference as a value.
#[test]
fn an_unresolved_key_vault_reference_stops_the_other_commands_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let reference = "@Microsoft.KeyVault(VaultName=kv-tp;SecretName=token-encryption-key)";
    for args in [vec!["serve"], vec!["subscribe"], vec!["users"]] {
        let out = run(&args, &[("TOKEN_ENCRYPTION_KEY", reference)], dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = one_line_error(&out);
        assert!(
            line.starts_with(
                "error: setting TOKEN_ENCRYPTION_KEY: is an unresolved Key Vault reference (vault kv-tp, secret token-encryption-key):"
            ),
            "{args:?}: {line}"
        );
    }
}
