//! Tables of settings: what parses, what is refused and how the refusal reads.

use super::*;

fn parse(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::parse(&Sources::from_map(map))
}

#[test]
fn empty_environment_gives_defaults() {
    let s = parse(&[]).unwrap();
    assert_eq!(s.tenant, "organizations");
    assert_eq!(s.graph_endpoint.as_str(), "https://graph.microsoft.com/");
    assert_eq!(s.poll_interval, Duration::from_secs(30));
    assert_eq!(s.presence_topic, "presence");
    assert!(s
        .auth_scopes
        .iter()
        .any(|x| x.ends_with("Presence.Read.All")));
    assert!(s.tables.is_none() && s.store.is_none());
}

#[test]
fn tenant_sync_users_is_a_list_and_the_singular_is_an_alias() {
    let s = parse(&[("TENANT_SYNC_USERS", "a@contoso.com, 0000-b ,")]).unwrap();
    assert_eq!(s.tenant_sync_users, vec!["a@contoso.com", "0000-b"]);
    let s = parse(&[("TENANT_SYNC_USER", "sync")]).unwrap();
    assert_eq!(s.tenant_sync_users, vec!["sync"]);
    let s = parse(&[("TENANT_SYNC_USERS", "a,B"), ("TENANT_SYNC_USER", "b")]).unwrap();
    assert_eq!(s.tenant_sync_users, vec!["a", "B"]);
    assert!(parse(&[]).unwrap().tenant_sync_users.is_empty());
}

/// Issue 32: 100,000 ids do not fit in one environment variable (128 KiB on Linux).
#[test]
fn tenant_users_file_adds_its_ids_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.txt");
    std::fs::write(&path, "u2\nu3, u4\n\n  u1\n").unwrap();
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let file = path.display().to_string();
    let s = parse(&[
        ("TENANT_USERS", "u1,u2"),
        ("TENANT_USERS_FILE", &file),
        ("AZURE_TENANT_ID", tenant),
    ])
    .unwrap();
    assert_eq!(s.tenant_users, ["u1", "u2", "u3", "u4"]);
    // The file alone is tenant mode too: the tenant must be a GUID.
    let e = parse(&[
        ("TENANT_USERS_FILE", &file),
        ("AZURE_TENANT_ID", "organizations"),
    ])
    .unwrap_err();
    assert_eq!(e.setting, "AZURE_TENANT_ID");
    let missing = dir.path().join("nope.txt").display().to_string();
    let e = parse(&[("TENANT_USERS_FILE", &missing), ("AZURE_TENANT_ID", tenant)]).unwrap_err();
    assert_eq!(e.setting, "TENANT_USERS_FILE");
}

#[test]
fn publish_mode_defaults_to_rest_only_in_azure_with_a_connection_string() {
    let cs = (
        "ServiceBusConnection",
        "Endpoint=sb://ns/;SharedAccessKeyName=s;SharedAccessKey=k",
    );
    let azure = ("WEBSITE_HOSTNAME", "app.azurewebsites.net");
    let cases: &[(&[(&str, &str)], PublishMode)] = &[
        (&[], PublishMode::Binding),
        // `func start`: the connection string feeds the output binding.
        (&[cs], PublishMode::Binding),
        // Azure with the identity-based binding only.
        (&[azure], PublishMode::Binding),
        (&[cs, azure], PublishMode::Rest),
        (
            &[cs, azure, ("PUBLISH_MODE", "binding")],
            PublishMode::Binding,
        ),
        (&[("PUBLISH_MODE", "REST")], PublishMode::Rest),
    ];
    for (env, want) in cases {
        assert_eq!(parse(env).unwrap().publish_mode, *want, "{env:?}");
    }
}

#[test]
fn wrong_values_name_the_setting() {
    let cases: &[(&str, &str)] = &[
        ("POLL_INTERVAL", "soon"),
        ("POLL_INTERVAL", "0"),
        ("STORE", "mongo"),
        ("GRAPH_ENDPOINT", "not a url"),
        ("HUE_TARGETS", "light:1,lamp:2"),
        ("PUBLIC_BASE_URL", "ftp://x"),
        ("AZURE_TENANT_ID", "a b"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "99999"),
        ("AZURE_CLIENT_SECRET_EXPIRES", "next year"),
    ];
    for (k, v) in cases {
        let e = parse(&[(k, v)]).unwrap_err();
        assert_eq!(e.setting, *k, "{e}");
        assert!(e.to_string().starts_with(&format!("setting {k}:")), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let e = parse(&[("TOKEN_ENCRYPTION_KEY", "c2VjcmV0LXZhbHVl")]).unwrap_err();
    assert!(!e.to_string().contains("c2VjcmV0LXZhbHVl"));
    let s = parse(&[
        ("AZURE_CLIENT_SECRET", "hunter2-secret"),
        ("HUE_APPLICATION_KEY", "hue-secret-key"),
        (
            "ServiceBusConnection",
            "Endpoint=sb://x/;SharedAccessKey=sb-secret",
        ),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ])
    .unwrap();
    let dbg = format!("{s:?}");
    for secret in ["hunter2", "hue-secret", "sb-secret", "AAECAw"] {
        assert!(!dbg.contains(secret), "{secret} leaked");
    }
    assert_eq!(s.token_key_bytes().unwrap()[31], 31);
}

#[test]
fn environment_wins_over_the_file_and_lists_parse() {
    let map = [("POLL_INTERVAL".to_string(), "45".to_string())].into();
    let src = Sources::from_map(map)
        .with_toml(
            "POLL_INTERVAL = 10\nHUE_TARGETS = [\"room:abc\", \"light:3\"]\nWATCH_USERS = \"a@x.com, b\"\n[lights]\nbusy = \"#ff0000\"\n",
        )
        .unwrap();
    let s = Settings::parse(&src).unwrap();
    assert_eq!(s.poll_interval, Duration::from_secs(45));
    assert_eq!(
        s.hue_targets,
        vec![HueTarget::Room("abc".into()), HueTarget::Light("3".into())]
    );
    assert_eq!(s.watch_users, vec!["a@x.com", "b"]);
    assert!(s.file_tables.contains_key("lights"));
}

#[test]
fn public_base_url_falls_back_to_website_hostname() {
    let s = parse(&[("WEBSITE_HOSTNAME", "app.azurewebsites.net")]).unwrap();
    assert_eq!(
        s.redirect_uri().unwrap().as_str(),
        "https://app.azurewebsites.net/api/auth/end"
    );
    let s = parse(&[("PUBLIC_BASE_URL", "http://localhost:7071/")]).unwrap();
    assert_eq!(
        s.redirect_uri().unwrap().as_str(),
        "http://localhost:7071/api/auth/end"
    );
    assert_eq!(
        parse(&[]).unwrap().redirect_uri().unwrap_err().setting,
        "PUBLIC_BASE_URL"
    );
}

#[test]
fn identity_based_storage_is_recognised() {
    let s = parse(&[("AzureWebJobsStorage__accountName", "mystore")]).unwrap();
    match s.tables {
        Some(TablesConnection::Identity { endpoint, .. }) => {
            assert_eq!(endpoint.as_str(), "https://mystore.table.core.windows.net/")
        }
        other => panic!("{other:?}"),
    }
}
