//! Which functions cannot run while a setting they need is an App Service Key Vault
//! reference left unresolved (`config::references`), or while a Key Vault certificate they
//! need is not loaded yet (`host::certificates`): they answer 503 with that setting's or
//! certificate's line (`host::handler`'s middleware), the others run as usual.

use crate::config::references::KeyVaultReference;
use crate::config::Settings;

/// The functions that sign in, refresh or use tokens: they need the token key and the app's
/// client credential (secret or certificate).
const TOKENS: &[&str] = &[
    "auth-start",
    "auth-end",
    "lifecycle",
    "presence-refresh",
    "subscriptions-renew",
    "pbx-events",
];

/// Which functions cannot work without `setting`'s value. The token key and the client
/// secret: everything that signs in, refreshes or uses tokens. The publisher's connection
/// string: what publishes. The edge's keys: the edge function. Anything else (the store's
/// connection, a setting not named here): every function but `health`, since which ones
/// need it is not known here.
fn needed_by(setting: &str, function: &str) -> bool {
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

/// A certificate the handler loads from Key Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificate {
    /// `KEY_VAULT_NOTIFICATION_CERTIFICATE`: rich notifications are encrypted for it.
    Notification,
    /// `KEY_VAULT_CLIENT_CERTIFICATE`: the app's credential towards Entra ID.
    Client,
}

impl Certificate {
    /// The setting that names it.
    pub fn setting(self) -> &'static str {
        match self {
            Certificate::Notification => "KEY_VAULT_NOTIFICATION_CERTIFICATE",
            Certificate::Client => "KEY_VAULT_CLIENT_CERTIFICATE",
        }
    }
}

/// Whether `function` cannot work until `certificate` is loaded. The notification
/// certificate: `notifications` (a batch it cannot decrypt would be acknowledged and lost;
/// a 503 makes Graph deliver it again, for hours) and `subscriptions-renew` (subscriptions
/// are created for it). The client certificate: everything that uses tokens, like the
/// client secret, unless `other_credential` (`AZURE_CLIENT_SECRET` or
/// `AZURE_CLIENT_CERTIFICATE_PATH`) can stand in meanwhile. Graph's validation handshake
/// (`handshake`) needs neither: another instance may be creating a subscription right now.
pub fn certificate_needed_by(
    certificate: Certificate,
    function: &str,
    handshake: bool,
    other_credential: bool,
) -> bool {
    if handshake {
        return false;
    }
    match certificate {
        Certificate::Notification => matches!(function, "notifications" | "subscriptions-renew"),
        Certificate::Client => !other_credential && TOKENS.contains(&function),
    }
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

    #[test]
    fn each_missing_certificate_blocks_the_functions_that_need_it_and_no_others() {
        use Certificate::{Client, Notification};
        let cases: &[(Certificate, bool, bool, &[&str])] = &[
            (
                Notification,
                false,
                false,
                &["notifications", "subscriptions-renew"],
            ),
            // A validation handshake needs no certificate.
            (Notification, true, false, &[]),
            (
                Client,
                false,
                false,
                &[
                    "auth-start",
                    "auth-end",
                    "lifecycle",
                    "presence-refresh",
                    "subscriptions-renew",
                    "pbx-events",
                ],
            ),
            // A client secret or certificate file works until the certificate is there.
            (Client, false, true, &[]),
            (Client, true, false, &[]),
        ];
        for (certificate, handshake, other, blocked) in cases {
            for f in functions::FUNCTIONS {
                assert_eq!(
                    certificate_needed_by(*certificate, f.name, *handshake, *other),
                    blocked.contains(&f.name),
                    "{certificate:?} handshake={handshake} other={other} / {}",
                    f.name
                );
            }
            assert!(!certificate_needed_by(*certificate, "health", false, false));
        }
    }
}
