//! App Service Key Vault references that reached the process unresolved.
//!
//! App Service resolves an app setting whose value is `@Microsoft.KeyVault(...)` with the
//! app's identity before it starts the worker. When it cannot (the secret does not exist yet,
//! the identity's role assignment is still propagating, the vault refuses), it hands the
//! worker the reference text itself, and tries again about once a day, on a restart or when
//! asked to (`POST <app>/config/configreferences/appsettings/refresh`). Source:
//! <https://learn.microsoft.com/azure/app-service/app-service-key-vault-references>
//! (MicrosoftDocs/azure-docs, articles/app-service/app-service-key-vault-references.md:
//! "Understand rotation", the two reference forms under "Source app settings from Key Vault",
//! and "Troubleshoot Key Vault references": "the reference string is used instead").
//!
//! [`Sources`](super::Sources) treats such a value as unset and records it here, so no setting
//! is ever parsed from, or sent on as, the reference text (an `AZURE_CLIENT_SECRET` of
//! `@Microsoft.KeyVault(...)` would otherwise go to Entra ID as the secret). The handler
//! starts anyway and the functions that need the setting answer with [`KeyVaultReference`]'s
//! one line; the other commands refuse to start with it.
//!
//! What is kept of the reference is the setting's name and the vault's and secret's names,
//! and only when they are made of the characters Key Vault allows in them: a reference holds
//! no secret, but nothing else of the value is ever repeated.

use std::fmt;

use super::error::ConfigError;

/// A setting whose value is a Key Vault reference App Service did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultReference {
    /// The setting's name.
    pub setting: String,
    /// The vault's name, when the reference names one readably.
    pub vault: Option<String>,
    /// The secret's name, when the reference names one readably.
    pub secret: Option<String>,
}

/// The prefix App Service recognises (compared without regard to case: a reference typed
/// with another case is not resolved either, and is no more a usable value).
const PREFIX: &str = "@microsoft.keyvault(";

/// `Some` when `value` is a Key Vault reference: one of the two documented forms,
/// `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>[/<version>])`
/// and `@Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>[;SecretVersion=<version>])`,
/// or anything else that starts like one (App Service passes a reference it cannot parse on
/// as text too, and that text is no valid value of any setting either).
pub fn parse(setting: &str, value: &str) -> Option<KeyVaultReference> {
    let v = value.trim();
    let head = v.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let inner = v[PREFIX.len()..]
        .strip_suffix(')')
        .unwrap_or(&v[PREFIX.len()..]);
    let mut vault = None;
    let mut secret = None;
    for part in inner.split(';') {
        let Some((key, val)) = part.split_once('=') else {
            continue;
        };
        let val = val.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "secreturi" => {
                if let Ok(uri) = url::Url::parse(val) {
                    vault = uri
                        .host_str()
                        .and_then(|h| h.split_once('.'))
                        .map(|(label, _)| label.to_owned());
                    let mut segments = uri.path_segments().into_iter().flatten();
                    if segments.next() == Some("secrets") {
                        secret = segments.next().map(str::to_owned);
                    }
                }
            }
            "vaultname" => vault = Some(val.to_owned()),
            "secretname" => secret = Some(val.to_owned()),
            _ => {}
        }
    }
    Some(KeyVaultReference {
        setting: setting.to_owned(),
        vault: vault.filter(|n| is_name(n, 24)),
        secret: secret.filter(|n| is_name(n, 127)),
    })
}

/// Made of what Key Vault allows in a name (letters, digits and hyphens; vaults at most 24
/// characters, secrets 127), so repeating it repeats nothing else.
fn is_name(n: &str, max: usize) -> bool {
    (1..=max).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl KeyVaultReference {
    /// What is wrong and what to check, as a [`ConfigError`]: its `Display` is the one line a
    /// function answers with, `/api/health` lists and the other commands exit with.
    pub fn to_config_error(&self) -> ConfigError {
        let names = match (&self.vault, &self.secret) {
            (Some(v), Some(s)) => format!(" (vault {v}, secret {s})"),
            (None, Some(s)) => format!(" (secret {s})"),
            (Some(v), None) => format!(" (vault {v})"),
            (None, None) => String::new(),
        };
        ConfigError {
            setting: self.setting.clone(),
            problem: format!(
                "is an unresolved Key Vault reference{names}: App Service could not read the \
                 secret and passed the reference text on; check that the secret exists, that \
                 the app's identity (keyVaultReferenceIdentity) has Key Vault Secrets User on \
                 the vault, then refresh the app's Key Vault references or restart it \
                 (docs/deploy.md, \"What can go wrong on the first run\")"
            ),
        }
    }
}

impl fmt::Display for KeyVaultReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_config_error().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_forms_are_recognised_with_their_vault_and_secret_names() {
        // The examples of the App Service documentation (see the module's source note), and
        // what infra/modules/functionapp.bicep writes (a versionless URI with a trailing slash).
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret)",
                Some("myvault"),
                Some("mysecret"),
            ),
            (
                "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/mysecret/ec96f02080254f109c51a1f14cdb1931)",
                Some("myvault"),
                Some("mysecret"),
            ),
            (
                "@Microsoft.KeyVault(SecretUri=https://kv-tp-abc.vault.azure.net/secrets/token-encryption-key/)",
                Some("kv-tp-abc"),
                Some("token-encryption-key"),
            ),
            (
                "@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret)",
                Some("myvault"),
                Some("mysecret"),
            ),
            (
                "@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret;SecretVersion=ec96f02080254f109c51a1f14cdb1931)",
                Some("myvault"),
                Some("mysecret"),
            ),
            // Another case and surrounding blanks: still not a value.
            (
                "  @microsoft.keyvault(secreturi=https://v1.vault.azure.cn/secrets/s1)  ",
                Some("v1"),
                Some("s1"),
            ),
            // Unparseable: still a reference, but nothing of it is repeated.
            ("@Microsoft.KeyVault(garbage)", None, None),
            (
                "@Microsoft.KeyVault(VaultName=no spaces allowed;SecretName=a'b)",
                None,
                None,
            ),
        ];
        for (value, vault, secret) in cases {
            let r = parse("X", value).unwrap_or_else(|| panic!("{value} not recognised"));
            assert_eq!(r.vault.as_deref(), *vault, "{value}");
            assert_eq!(r.secret.as_deref(), *secret, "{value}");
        }
    }

    #[test]
    fn ordinary_values_are_not_references() {
        for value in [
            "",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b",
            "@Microsoft.AppConfiguration(Endpoint=https://x.azconfig.io; Key=k)",
            "@Microsoft.Key",
            "é@Microsoft.KeyVault(",
        ] {
            assert_eq!(parse("X", value), None, "{value}");
        }
    }

    #[test]
    fn the_line_names_the_setting_the_vault_and_the_secret_and_what_to_check() {
        let r = parse(
            "TOKEN_ENCRYPTION_KEY",
            "@Microsoft.KeyVault(SecretUri=https://x.vault.azure.net/secrets/k/)",
        )
        .unwrap();
        let line = r.to_string();
        assert!(
            line.starts_with(
                "setting TOKEN_ENCRYPTION_KEY: is an unresolved Key Vault reference (vault x, secret k):"
            ),
            "{line}"
        );
        for what in [
            "secret exists",
            "identity",
            "Key Vault Secrets User",
            "refresh",
        ] {
            assert!(line.contains(what), "{what}: {line}");
        }
        assert!(!line.contains('\n'));
        assert!(
            !line.contains("https://"),
            "the URI is not repeated: {line}"
        );
    }
}
