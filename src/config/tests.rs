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

#[test]
fn an_unresolved_key_vault_reference_in_any_setting_reads_as_unset_and_is_recorded() {
    // What App Service hands the worker when it cannot resolve a reference (the secret is
    // not there yet, the role is still propagating): the reference text itself.
    let kv = |name: &str| {
        format!("@Microsoft.KeyVault(SecretUri=https://x.vault.azure.net/secrets/{name}/)")
    };
    let token = kv("k");
    let bus = "@Microsoft.KeyVault(VaultName=x;SecretName=servicebus-publisher)";
    let secret = kv("client-secret");
    let s = parse(&[
        ("TOKEN_ENCRYPTION_KEY", &token),
        ("ServiceBusConnection", bus),
        ("AZURE_CLIENT_SECRET", &secret),
        ("WEBSITE_HOSTNAME", "app.azurewebsites.net"),
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
    ])
    .expect("a reference is never a parse error");
    assert!(s.token_encryption_key.is_none());
    assert!(s.service_bus_connection.is_none());
    assert!(
        s.client_secret.is_none(),
        "never sent to Entra ID as the secret"
    );
    // Without a usable connection string the REST publisher is not inferred either.
    assert_eq!(s.publish_mode, PublishMode::Binding);
    let names: Vec<&str> = s
        .unresolved_references
        .iter()
        .map(|r| r.setting.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "AZURE_CLIENT_SECRET",
            "TOKEN_ENCRYPTION_KEY",
            "ServiceBusConnection"
        ]
    );
    let err = s.refuse_unresolved_references().unwrap_err();
    assert_eq!(err.setting, "AZURE_CLIENT_SECRET");
    assert!(
        err.to_string()
            .contains("unresolved Key Vault reference (vault x, secret client-secret)"),
        "{err}"
    );

    let plain = parse(&[(
        "TOKEN_ENCRYPTION_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )])
    .unwrap();
    assert!(plain.unresolved_references.is_empty());
    assert!(plain.refuse_unresolved_references().is_ok());
}

#[test]
fn ingress_proxy_is_one_ip_address_or_a_one_line_refusal() {
    assert_eq!(parse(&[]).unwrap().ingress_proxy, None);
    let s = parse(&[("INGRESS_PROXY", " 172.30.32.2 ")]).unwrap();
    assert_eq!(s.ingress_proxy, Some("172.30.32.2".parse().unwrap()));
    for wrong in ["172.30.32.0/23", "supervisor", "172.30.32.2,10.0.0.1"] {
        let e = parse(&[("INGRESS_PROXY", wrong)]).unwrap_err();
        assert_eq!(e.setting, "INGRESS_PROXY", "{wrong}");
        assert!(e.problem.contains("one IP address"), "{e}");
    }
}
