//! Tables of settings: what parses, what is refused and how the refusal reads.

use std::time::Duration;

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
    assert_eq!(s.app.tenant, "organizations");
    assert_eq!(s.graph.endpoint.as_str(), "https://graph.microsoft.com/");
    assert_eq!(s.polling.interval, Duration::from_secs(30));
    assert_eq!(s.service_bus.topic, "presence");
    assert!(s
        .app
        .auth_scopes
        .iter()
        .any(|x| x.ends_with("Presence.Read.All")));
    assert!(s.store.tables.is_none() && s.store.kind.is_none());
}

#[test]
fn tenant_sync_users_is_a_list_and_the_singular_is_an_alias() {
    let s = parse(&[("TENANT_SYNC_USERS", "a@contoso.com, 0000-b ,")]).unwrap();
    assert_eq!(s.polling.tenant_sync_users, vec!["a@contoso.com", "0000-b"]);
    let s = parse(&[("TENANT_SYNC_USER", "sync")]).unwrap();
    assert_eq!(s.polling.tenant_sync_users, vec!["sync"]);
    let s = parse(&[("TENANT_SYNC_USERS", "a,B"), ("TENANT_SYNC_USER", "b")]).unwrap();
    assert_eq!(s.polling.tenant_sync_users, vec!["a", "B"]);
    assert!(parse(&[]).unwrap().polling.tenant_sync_users.is_empty());
}

/// 100,000 ids do not fit in one environment variable (128 KiB on Linux).
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
    assert_eq!(s.polling.tenant_users, ["u1", "u2", "u3", "u4"]);
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
        assert_eq!(
            parse(env).unwrap().service_bus.publish_mode,
            *want,
            "{env:?}"
        );
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
    assert_eq!(s.polling.interval, Duration::from_secs(45));
    assert_eq!(
        s.hue.targets,
        vec![HueTarget::Room("abc".into()), HueTarget::Light("3".into())]
    );
    assert_eq!(s.edge.watch_users, vec!["a@x.com", "b"]);
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
    match s.store.tables {
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
    assert!(s.encryption.key.is_none());
    assert!(s.service_bus.connection.is_none());
    assert!(
        s.app.client_secret.is_none(),
        "never sent to Entra ID as the secret"
    );
    // Without a usable connection string the REST publisher is not inferred either.
    assert_eq!(s.service_bus.publish_mode, PublishMode::Binding);
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
    assert_eq!(parse(&[]).unwrap().access.ingress_proxy, None);
    let s = parse(&[("INGRESS_PROXY", " 172.30.32.2 ")]).unwrap();
    assert_eq!(s.access.ingress_proxy, Some("172.30.32.2".parse().unwrap()));
    for wrong in ["172.30.32.0/23", "supervisor", "172.30.32.2,10.0.0.1"] {
        let e = parse(&[("INGRESS_PROXY", wrong)]).unwrap_err();
        assert_eq!(e.setting, "INGRESS_PROXY", "{wrong}");
        assert!(e.problem.contains("one IP address"), "{e}");
    }
}

#[test]
fn every_refusal_is_the_one_line_it_always_was() {
    // Pinned word for word: these lines are what users see (and what docs and searches
    // quote), so a change to how settings are read must not change one of them.
    let kv = "@Microsoft.KeyVault(VaultName=v;SecretName=s)";
    let long = "x".repeat(101);
    let tenant = format!("{}…", "x".repeat(80));
    let cx: &[(&str, &str)] = &[
        ("PBX", "3cx"),
        ("PBX_3CX_URL", "https://pbx.example.com"),
        ("PBX_3CX_CLIENT_ID", "cid"),
        ("PBX_3CX_CLIENT_SECRET", "csec"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        cx.iter().chain(extra).copied().collect()
    };
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![("AZURE_TENANT_ID", "a b")], "setting AZURE_TENANT_ID: \"a b\" is not valid; expected a tenant id (GUID), a domain, `organizations` or `common`".into()),
        (vec![("AZURE_TENANT_ID", &long)], format!("setting AZURE_TENANT_ID: \"{tenant}\" is not valid; expected a tenant id (GUID), a domain, `organizations` or `common`")),
        (vec![("TENANT_USERS", "a"), ("AZURE_TENANT_ID", "contoso.com")], "setting AZURE_TENANT_ID: \"contoso.com\" is not valid; expected the tenant's id (a GUID) in tenant mode (TENANT_USERS is set)".into()),
        (vec![("AZURE_CLIENT_SECRET_EXPIRES", "next year")], "setting AZURE_CLIENT_SECRET_EXPIRES: \"next year\" is not valid; expected an RFC 3339 time such as 2027-05-01T00:00:00Z".into()),
        (vec![("AZURE_CLIENT_ASSERTION_ALG", "ES256")], "setting AZURE_CLIENT_ASSERTION_ALG: \"ES256\" is not valid; expected PS256 or RS256".into()),
        (vec![("KEY_VAULT_URL", "ftp://x")], "setting KEY_VAULT_URL: \"ftp://x\" is not valid; expected an http(s) URL".into()),
        (vec![("AZURE_AUTHORITY_HOST", "nope")], "setting AZURE_AUTHORITY_HOST: \"nope\" is not valid; expected an http(s) URL".into()),
        (vec![("GRAPH_ENDPOINT", "mailto:a@b")], "setting GRAPH_ENDPOINT: \"mailto:a@b\" is not valid; expected an http(s) URL".into()),
        (vec![("PUBLIC_BASE_URL", "http://x?a=1")], "setting PUBLIC_BASE_URL: \"http://x?a=1\" is not valid; expected an origin such as https://example.com".into()),
        (vec![("WEBSITE_HOSTNAME", "bad host/?")], "setting WEBSITE_HOSTNAME: \"https://bad host/?\" is not valid; expected an origin such as https://example.com".into()),
        (vec![("TOKEN_ENCRYPTION_KEY", "c2VjcmV0")], "setting TOKEN_ENCRYPTION_KEY: is not valid; expected base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)".into()),
        (vec![("TOKEN_ENCRYPTION_KEY_PREVIOUS", "!!")], "setting TOKEN_ENCRYPTION_KEY_PREVIOUS: is not valid; expected base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)".into()),
        (vec![("AzureWebJobsStorage__accountName", "bad-name")], "setting AzureWebJobsStorage__accountName: \"bad-name\" is not valid; expected a storage account name (letters and digits)".into()),
        (vec![("AzureWebJobsStorage__tableServiceUri", "nope")], "setting AzureWebJobsStorage__tableServiceUri: \"nope\" is not valid; expected an https URL".into()),
        (vec![("STORE", "mongo")], "setting STORE: \"mongo\" is not valid; expected `table` or `sqlite`".into()),
        (vec![("PUBLISH_MODE", "carrier pigeon")], "setting PUBLISH_MODE: \"carrier pigeon\" is not valid; expected `binding` or `rest`".into()),
        (vec![("SERVICEBUS_ENDPOINT", "x")], "setting SERVICEBUS_ENDPOINT: \"x\" is not valid; expected an http(s) URL".into()),
        (vec![("POLL_INTERVAL", "86401")], "setting POLL_INTERVAL: \"86401\" is not valid; expected a whole number of seconds from 1 to 86400".into()),
        (vec![("RECONCILE_INTERVAL", "0")], "setting RECONCILE_INTERVAL: \"0\" is not valid; expected a whole number of minutes from 1 to 1440".into()),
        (vec![("POLL_CONCURRENCY", "65")], "setting POLL_CONCURRENCY: \"65\" is not valid; expected a number from 1 to 64".into()),
        (vec![("PRESENCE_API_URL", "c")], "setting PRESENCE_API_URL: \"c\" is not valid; expected an http(s) URL".into()),
        (vec![("HUE_TARGETS", "light:1,lamp:2")], "setting HUE_TARGETS: \"lamp:2\" is not valid; expected a comma-separated list of light:ID, room:ID, zone:ID or group:ID".into()),
        (vec![("FUNCTIONS_CUSTOMHANDLER_PORT", "99999")], "setting FUNCTIONS_CUSTOMHANDLER_PORT: \"99999\" is not valid; expected a TCP port number".into()),
        (vec![("MQTT_URL", "http://u:pw@b")], "setting MQTT_URL: is not valid; expected mqtt://host[:port] or mqtts://host[:port]".into()),
        (vec![("MQTT_URL", "mqtt://b"), ("MQTT_TOPIC_PREFIX", "/")], "setting MQTT_TOPIC_PREFIX: \"\" is not valid; expected a topic prefix without wildcards (+ or #)".into()),
        (vec![("MQTT_URL", "mqtt://b"), ("MQTT_NAMES", "u1=A; u2")], "setting MQTT_NAMES: \"u2\" is not valid; expected `userId=Display Name` pairs separated by `;`".into()),
        (vec![("WEBHOOK_URL", "https://h.example/x")], "setting WEBHOOK_SECRET: is not set; expected a shared secret to sign the webhook's requests with (X-Signature)".into()),
        (vec![("WEBHOOK_URL", "ftp://h/x"), ("WEBHOOK_SECRET", "ws")], "setting WEBHOOK_URL: is not valid; expected an http(s) URL".into()),
        (vec![("WLED_URL", "w")], "setting WLED_URL: is not valid; expected the WLED controller's http URL".into()),
        (vec![("BUSYLIGHT", "maybe")], "setting BUSYLIGHT: \"maybe\" is not valid; expected `auto` or `off`".into()),
        (vec![("PBX", "asterisk")], "setting PBX: \"asterisk\" is not valid; expected 3cx or http".into()),
        (vec![("PBX", "3cx")], "setting PBX_3CX_URL: is not set; expected the 3CX V20 base URL, e.g. https://pbx.example.com".into()),
        (vec![("PBX", "3cx"), ("PBX_3CX_URL", "pbx")], "setting PBX_3CX_URL: \"pbx\" is not valid; expected an https URL".into()),
        (vec![("PBX", "3cx"), ("PBX_3CX_URL", "https://pbx")], "setting PBX_3CX_CLIENT_ID: is not set; expected the client id of the 3CX API client (Integrations → API)".into()),
        (vec![("PBX", "3cx"), ("PBX_3CX_URL", "https://pbx"), ("PBX_3CX_CLIENT_ID", "c"), ("PBX_3CX_CLIENT_SECRET", kv)], "setting PBX_3CX_CLIENT_SECRET: is not set; expected the API key shown once when the 3CX API client was created".into()),
        (with(&[("PBX_PRESET", "nope")]), "setting PBX_PRESET: \"nope\" is not valid; expected vtx, 3cx".into()),
        (with(&[("PBX_STABLE_SECONDS", "3601")]), "setting PBX_STABLE_SECONDS: \"3601\" is not valid; expected a whole number of seconds from 0 to 3600".into()),
        (vec![("PBX", "http"), ("PBX_PROFILE_POLL_SECONDS", "-1")], "setting PBX_PROFILE_POLL_SECONDS: \"-1\" is not valid; expected a whole number of seconds from 0 to 3600".into()),
        // Two wrong settings: the same one is named as always.
        (vec![("AZURE_TENANT_ID", "a b"), ("PUBLIC_BASE_URL", "x")], "setting PUBLIC_BASE_URL: \"x\" is not valid; expected an origin such as https://example.com".into()),
    ];
    for (env, want) in cases {
        let e = parse(&env).unwrap_err();
        assert_eq!(e.to_string(), want, "{env:?}");
    }
    let file = |toml: &str| {
        Settings::parse(
            &Sources::from_map(Default::default())
                .with_toml(toml)
                .unwrap(),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        file("STORE = true\n"),
        "setting STORE: \"true\" is not valid; expected `table` or `sqlite`"
    );
    assert_eq!(
        file("[sinks]\nBUSYLIGHT = false\n"),
        "setting BUSYLIGHT: \"false\" is not valid; expected `auto` or `off`"
    );
    assert_eq!(
        file("[sinks]\nWEBHOOK_URL = \"https://h/x\"\nWEBHOOK_SECRET = \"  \"\n"),
        "setting WEBHOOK_SECRET: is not set; expected a shared secret to sign the webhook's requests with (X-Signature)"
    );
    assert_eq!(
        file("PBX = \"http\"\npbx = 3\n"),
        "setting pbx: is not valid; expected a [pbx] table"
    );
}

#[test]
fn a_list_given_as_a_toml_array_is_its_items_whatever_the_list_separates_them_with() {
    // AUTH_SCOPES is separated by blanks, not commas: an array's items are its scopes.
    let src = Sources::from_map(Default::default())
        .with_toml(
            "AUTH_SCOPES = [\"openid\", \"offline_access\"]\nWATCH_USERS = [\"a, b\", \"c\"]\n",
        )
        .unwrap();
    let s = Settings::parse(&src).unwrap();
    assert_eq!(s.app.auth_scopes, ["openid", "offline_access"]);
    assert_eq!(s.edge.watch_users, ["a", "b", "c"]);
}

#[test]
fn each_missing_setting_is_named_by_the_method_that_requires_it() {
    let s = parse(&[]).unwrap();
    let lines = [
        s.require_client_id().map(drop),
        s.require_public_base_url().map(drop),
        s.redirect_uri().map(drop),
        s.require_token_key().map(drop),
        s.require_tables().map(drop),
        s.require_service_bus_connection("Listen").map(drop),
        s.require_receive_from().map(drop),
        s.require_hue_bridge().map(drop),
        s.require_hue_application_key().map(drop),
        s.require_hue_targets().map(drop),
        s.require_custom_handler_port().map(drop),
        s.require_pbx().map(drop),
    ]
    .map(|r| r.unwrap_err().to_string());
    assert_eq!(
        lines,
        [
            "setting AZURE_CLIENT_ID: is not set; expected the app registration's client id (a GUID)",
            "setting PUBLIC_BASE_URL: is not set; expected the public origin, e.g. https://myapp.azurewebsites.net",
            "setting PUBLIC_BASE_URL: is not set; expected the public origin, e.g. https://myapp.azurewebsites.net",
            "setting TOKEN_ENCRYPTION_KEY: is not set; expected base64 of 32 random bytes (openssl rand -base64 32)",
            "setting TABLES_CONNECTION_STRING: is not set; expected an Azure Storage connection string (or AzureWebJobsStorage) because STORE=table",
            "setting ServiceBusConnection: is not set; expected a Service Bus connection string with the Listen right",
            "setting PRESENCE_QUEUE or PRESENCE_SUBSCRIPTION: is not set; expected this edge's queue (`edge-<name>`) or its subscription on the topic",
            "setting HUE_BRIDGE: is not set; expected the bridge's address (see `teams-presence hue discover`)",
            "setting HUE_APPLICATION_KEY: is not set; expected a key from `teams-presence hue pair`",
            "setting HUE_TARGETS: is not set; expected what to colour, e.g. room:ID or light:ID (see `teams-presence hue list`)",
            "setting FUNCTIONS_CUSTOMHANDLER_PORT: is not set; expected the port the Functions host assigns (set by `func start`)",
            "setting PBX: is not set; expected 3cx or http: which PBX to sync with",
        ]
    );

    let s = parse(&[
        ("PRESENCE_SUBSCRIPTION", "edge-a"),
        ("PRESENCE_QUEUE", "edge-b"),
        ("HUE_TARGETS", "room:1"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"),
    ])
    .unwrap();
    assert_eq!(
        s.require_receive_from().unwrap(),
        ReceiveFrom::Queue("edge-b")
    );
    assert_eq!(
        s.require_hue_targets().unwrap(),
        [HueTarget::Room("1".into())]
    );
    assert_eq!(s.require_custom_handler_port().unwrap(), 7071);
}

#[test]
fn the_pbx_settings_hold_what_the_chosen_adapter_uses_and_nothing_else() {
    assert!(matches!(parse(&[]).unwrap().pbx, PbxSettings::Off));
    let s = parse(&[
        ("PBX", "3cx"),
        ("PBX_3CX_URL", "https://pbx.example.com"),
        ("PBX_3CX_CLIENT_ID", " cid "),
        ("PBX_3CX_CLIENT_SECRET", "csec"),
        ("PBX_PROFILE_POLL_SECONDS", "0"),
        ("PBX_EVENTS_SECRET", "es"),
    ])
    .unwrap();
    let PbxSettings::ThreeCx { sync, api } = &s.pbx else {
        panic!("{:?}", s.pbx)
    };
    assert_eq!(api.client_id, "cid");
    assert_eq!(api.profile_poll, Duration::from_secs(1), "0 reads as 1 s");
    assert!(sync.events_secret.is_some());
    assert_eq!(
        s.require_pbx().unwrap().preset,
        crate::core::pbx::rules::Preset::ThreeCx
    );

    let s = parse(&[
        ("PBX", "HTTP"),
        ("PBX_HTTP_SET_URL", "https://pbx/{extension}/{status}"),
        // Another adapter's settings are not read.
        ("PBX_3CX_URL", "not even a URL"),
    ])
    .unwrap();
    let PbxSettings::Http { sync, http } = &s.pbx else {
        panic!("{:?}", s.pbx)
    };
    assert_eq!(
        http.value("PBX_HTTP_SET_URL").as_deref(),
        Some("https://pbx/{extension}/{status}")
    );
    assert_eq!(http.value("PBX_HTTP_SET_METHOD"), None);
    assert_eq!(sync.preset, crate::core::pbx::rules::Preset::Vtx);
    assert!(s.pbx.threecx().is_none());
}
