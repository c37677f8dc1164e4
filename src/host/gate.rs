//! Which functions cannot run while a setting they need is an App Service Key Vault
//! reference left unresolved (`config::references`): they answer 503 with that setting's
//! line (`host::handler`'s middleware), the others run as usual.

use crate::config::references::KeyVaultReference;
use crate::config::Settings;

/// Which functions cannot work without `setting`'s value. The token key and the client
/// secret: everything that signs in, refreshes or uses tokens. The publisher's connection
/// string: what publishes. The edge's keys: the edge function. Anything else (the store's
/// connection, a setting not named here): every function but `health`, since which ones
/// need it is not known here.
fn needed_by(setting: &str, function: &str) -> bool {
    const TOKENS: &[&str] = &[
        "auth-start",
        "auth-end",
        "lifecycle",
        "presence-refresh",
        "subscriptions-renew",
        "pbx-events",
    ];
    const PUBLISHING: &[&str] = &["notifications", "presence-refresh", "auth-end"];
    match setting {
        "TOKEN_ENCRYPTION_KEY" | "TOKEN_ENCRYPTION_KEY_PREVIOUS" | "AZURE_CLIENT_SECRET" => {
            TOKENS.contains(&function)
        }
        "ServiceBusConnection" => PUBLISHING.contains(&function),
        "PRESENCE_API_KEY" | "HUE_APPLICATION_KEY" => function == "hue-subscriber",
        _ => function != "health",
    }
}

/// The unresolved reference that keeps `function` from running, if any.
pub fn blocking<'a>(settings: &'a Settings, function: &str) -> Option<&'a KeyVaultReference> {
    settings
        .unresolved_references
        .iter()
        .find(|r| needed_by(&r.setting, function))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::functions;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(&crate::config::Sources::from_map(map)).unwrap()
    }

    #[test]
    fn each_unresolved_setting_blocks_the_functions_that_need_it_and_no_others() {
        let kv = "@Microsoft.KeyVault(VaultName=kv;SecretName=s)";
        let cases: &[(&str, &[&str])] = &[
            (
                "TOKEN_ENCRYPTION_KEY",
                &[
                    "auth-start",
                    "auth-end",
                    "lifecycle",
                    "presence-refresh",
                    "subscriptions-renew",
                    "pbx-events",
                ],
            ),
            (
                "ServiceBusConnection",
                &["auth-end", "notifications", "presence-refresh"],
            ),
            (
                "TABLES_CONNECTION_STRING",
                &[
                    "auth-start",
                    "auth-end",
                    "notifications",
                    "lifecycle",
                    "presence-refresh",
                    "subscriptions-renew",
                    "presence-get",
                    "pbx-events",
                    "hue-subscriber",
                ],
            ),
        ];
        for (setting, blocked) in cases {
            let s = settings(&[(setting, kv)]);
            for f in functions::FUNCTIONS {
                assert_eq!(
                    blocking(&s, f.name).is_some(),
                    blocked.contains(&f.name),
                    "{setting} / {}",
                    f.name
                );
            }
            assert!(blocking(&s, "health").is_none(), "health always answers");
        }
        assert!(blocking(&settings(&[]), "auth-start").is_none());
    }
}
