//! Certificates from Azure Key Vault with the managed identity (cloud build only).
//!
//! A Key Vault certificate's private key is readable through the secret of the same name:
//! `application/x-pem-file` certificates come back as PEM (certificate and key), PKCS#12 ones
//! as base64 of a password-less PFX, which is converted to PEM here. Both the client
//! certificate (`KEY_VAULT_CLIENT_CERTIFICATE`) and the notification certificate
//! (`KEY_VAULT_NOTIFICATION_CERTIFICATE`) load this way at start-up.
//!
//! The notification certificate loads with its previous version too ([`load_certificate_versions`]):
//! after Key Vault rotates it, subscriptions created before still encrypt for the old one
//! until they are recreated, so both must decrypt. The previous version is the secret's
//! `previousVersion` when Key Vault records it (certificates created after June 2025), else
//! the newest usable one in `GET {vault}/secrets/{name}/versions` created before the current
//! ([`previous_version`]).

use base64::Engine;
use chrono::{DateTime, Utc};

/// One version of a secret, as `GET {vault}/secrets/{name}/versions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    /// The version id (last path segment of the secret id).
    pub version: String,
    /// `attributes.enabled` (absent counts as enabled).
    pub enabled: bool,
    /// `attributes.created`.
    pub created: Option<DateTime<Utc>>,
    /// `attributes.nbf`.
    pub not_before: Option<DateTime<Utc>>,
    /// `attributes.exp`.
    pub expires: Option<DateTime<Utc>>,
}

/// The version to keep beside `current` for decryption: the newest enabled version, valid at
/// `now`, created before the current one (versions without a creation time come last).
/// `None` when there is none: then only the current certificate is loaded.
pub fn previous_version<'a>(
    versions: &'a [SecretVersion],
    current: &str,
    now: DateTime<Utc>,
) -> Option<&'a str> {
    let current_created = versions
        .iter()
        .find(|v| v.version == current)
        .and_then(|v| v.created);
    versions
        .iter()
        .filter(|v| v.version != current && v.enabled)
        .filter(|v| v.not_before.is_none_or(|t| t <= now))
        .filter(|v| v.expires.is_none_or(|t| t > now))
        .filter(|v| match (v.created, current_created) {
            (Some(c), Some(cur)) => c <= cur,
            _ => true,
        })
        .max_by_key(|v| v.created)
        .map(|v| v.version.as_str())
}

/// Turns a Key Vault certificate secret into PEM (certificate + private key).
pub fn secret_to_pem(content_type: Option<&str>, value: &str) -> Result<Vec<u8>, String> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.contains("pkcs12") || !value.trim_start().starts_with("-----BEGIN") {
        let der = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| "the certificate secret is neither PEM nor base64 PKCS#12".to_owned())?;
        let pfx = openssl::pkcs12::Pkcs12::from_der(&der)
            .and_then(|p| p.parse2(""))
            .map_err(|_| {
                "the PKCS#12 certificate cannot be opened (a password-less PFX is expected)"
                    .to_owned()
            })?;
        let (Some(cert), Some(key)) = (pfx.cert, pfx.pkey) else {
            return Err("the PKCS#12 certificate has no certificate or no private key".into());
        };
        let mut pem = cert
            .to_pem()
            .map_err(|_| "cannot encode the certificate".to_owned())?;
        pem.extend(
            key.private_key_to_pem_pkcs8()
                .map_err(|_| "cannot encode the key".to_owned())?,
        );
        Ok(pem)
    } else {
        Ok(value.as_bytes().to_vec())
    }
}

/// A secrets client for the vault at `vault_url`, signed in as the managed identity
/// (user-assigned with `identity_client_id`, else system-assigned).
#[cfg(feature = "azure-sdk")]
fn secret_client(
    vault_url: &url::Url,
    identity_client_id: Option<&str>,
) -> anyhow::Result<azure_security_keyvault_secrets::SecretClient> {
    use anyhow::Context;
    use azure_identity::{
        ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    };
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: identity_client_id.map(|c| UserAssignedId::ClientId(c.to_owned())),
        ..Default::default()
    }))
    .context("cannot use the managed identity")?;
    azure_security_keyvault_secrets::SecretClient::new(vault_url.as_str(), credential, None)
        .context("cannot create the Key Vault client")
}

/// Loads the certificate named `name` from the vault at `vault_url` as PEM.
#[cfg(feature = "azure-sdk")]
pub async fn load_certificate_pem(
    vault_url: &url::Url,
    name: &str,
    identity_client_id: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;

    let client = secret_client(vault_url, identity_client_id)?;
    let secret = client
        .get_secret(name, None)
        .await
        .with_context(|| format!("cannot read certificate {name} from {vault_url}"))?
        .into_model()
        .with_context(|| format!("Key Vault answered with an unreadable secret for {name}"))?;
    let value = secret
        .value
        .with_context(|| format!("certificate {name} has no value"))?;
    secret_to_pem(secret.content_type.as_deref(), &value)
        .map_err(|e| anyhow::anyhow!("certificate {name}: {e}"))
}

/// Loads the certificate named `name` as PEM, and its previous version's PEM when there is
/// one (see [`previous_version`]). A previous version that cannot be read is logged and left
/// out: the current one is what new subscriptions need.
#[cfg(feature = "azure-sdk")]
pub async fn load_certificate_versions(
    vault_url: &url::Url,
    name: &str,
    identity_client_id: Option<&str>,
) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
    use anyhow::Context;
    use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
    use azure_security_keyvault_secrets::ResourceExt;
    use futures_util::TryStreamExt;

    let client = secret_client(vault_url, identity_client_id)?;
    let current = client
        .get_secret(name, None)
        .await
        .with_context(|| format!("cannot read certificate {name} from {vault_url}"))?
        .into_model()
        .with_context(|| format!("Key Vault answered with an unreadable secret for {name}"))?;
    let current_version = current
        .resource_id()
        .ok()
        .and_then(|r| r.version)
        .unwrap_or_default();
    let value = current
        .value
        .as_deref()
        .with_context(|| format!("certificate {name} has no value"))?;
    let pem = secret_to_pem(current.content_type.as_deref(), value)
        .map_err(|e| anyhow::anyhow!("certificate {name}: {e}"))?;

    let to_utc = |secs: Option<i64>| secs.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let previous = match current.previous_version.clone().filter(|v| !v.is_empty()) {
        Some(v) => Some(v),
        None => {
            let mut versions = Vec::new();
            let listed: anyhow::Result<()> = async {
                let mut pager = client.list_secret_properties_versions(name, None)?;
                while let Some(p) = pager.try_next().await? {
                    let Some(version) = p.resource_id().ok().and_then(|r| r.version) else {
                        continue;
                    };
                    let a = p.attributes.unwrap_or_default();
                    versions.push(SecretVersion {
                        version,
                        enabled: a.enabled.unwrap_or(true),
                        created: to_utc(a.created.map(|t| t.unix_timestamp())),
                        not_before: to_utc(a.not_before.map(|t| t.unix_timestamp())),
                        expires: to_utc(a.expires.map(|t| t.unix_timestamp())),
                    });
                }
                Ok(())
            }
            .await;
            if let Err(e) = listed {
                tracing::warn!(certificate = %name, error = %format!("{e:#}"), "cannot list the certificate's versions; loading the current one only");
            }
            previous_version(&versions, &current_version, Utc::now()).map(str::to_owned)
        }
    };
    let Some(version) = previous else {
        return Ok((pem, None));
    };
    let old: anyhow::Result<Vec<u8>> = async {
        let secret = client
            .get_secret(
                name,
                Some(SecretClientGetSecretOptions {
                    secret_version: Some(version.clone()),
                    ..Default::default()
                }),
            )
            .await?
            .into_model()?;
        let value = secret.value.context("no value")?;
        secret_to_pem(secret.content_type.as_deref(), &value).map_err(anyhow::Error::msg)
    }
    .await;
    match old {
        Ok(p) => Ok((pem, Some(p))),
        Err(e) => {
            tracing::warn!(certificate = %name, version = %version, error = %format!("{e:#}"), "cannot read the previous certificate version; loading the current one only");
            Ok((pem, None))
        }
    }
}

/// Without the Azure SDK (the Pi build) Key Vault is not available.
#[cfg(not(feature = "azure-sdk"))]
pub async fn load_certificate_versions(
    vault_url: &url::Url,
    name: &str,
    identity_client_id: Option<&str>,
) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
    load_certificate_pem(vault_url, name, identity_client_id)
        .await
        .map(|p| (p, None))
}

/// Without the Azure SDK (the Pi build) Key Vault is not available.
#[cfg(not(feature = "azure-sdk"))]
pub async fn load_certificate_pem(
    _vault_url: &url::Url,
    _name: &str,
    _identity_client_id: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    Err(crate::config::ConfigError {
        setting: "KEY_VAULT_URL".into(),
        problem:
            "Key Vault needs the cloud build (default features); use certificate files instead"
                .into(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn v(version: &str, created_day: Option<u32>, enabled: bool) -> SecretVersion {
        SecretVersion {
            version: version.into(),
            enabled,
            created: created_day.map(|d| Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap()),
            not_before: None,
            expires: None,
        }
    }

    #[test]
    fn the_previous_version_is_the_newest_usable_one_before_the_current() {
        let now = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
        let expired = SecretVersion {
            expires: Some(now - chrono::Duration::days(1)),
            ..v("expired", Some(9), true)
        };
        let not_yet = SecretVersion {
            not_before: Some(now + chrono::Duration::days(1)),
            ..v("not-yet", Some(8), true)
        };
        let cases: &[(&str, Vec<SecretVersion>, &str, Option<&str>)] = &[
            ("only the current", vec![v("c", Some(10), true)], "c", None),
            (
                "two: the older one",
                vec![v("old", Some(1), true), v("c", Some(10), true)],
                "c",
                Some("old"),
            ),
            (
                "three: the newest before the current",
                vec![
                    v("a", Some(1), true),
                    v("b", Some(5), true),
                    v("c", Some(10), true),
                ],
                "c",
                Some("b"),
            ),
            (
                "disabled, expired and not-yet-valid ones are skipped",
                vec![
                    v("a", Some(1), true),
                    v("off", Some(7), false),
                    expired,
                    not_yet,
                    v("c", Some(10), true),
                ],
                "c",
                Some("a"),
            ),
            (
                "one created after the current (a rollback) is not previous",
                vec![
                    v("newer", Some(20), true),
                    v("c", Some(10), true),
                    v("a", Some(1), true),
                ],
                "c",
                Some("a"),
            ),
            ("nothing listed", vec![], "c", None),
        ];
        for (why, versions, current, want) in cases {
            assert_eq!(previous_version(versions, current, now), *want, "{why}");
        }
    }

    #[test]
    fn pem_and_pkcs12_secrets_become_pem() {
        let key = crate::clients::graph::certs::generate_self_signed("kv-test").unwrap();
        let pem = key.to_pem().unwrap();
        let text = String::from_utf8(pem.clone()).unwrap();
        assert_eq!(
            secret_to_pem(Some("application/x-pem-file"), &text).unwrap(),
            pem
        );

        let cert = openssl::x509::X509::from_pem(&pem).unwrap();
        let pkey = openssl::pkey::PKey::private_key_from_pem(&pem).unwrap();
        let pfx = openssl::pkcs12::Pkcs12::builder()
            .name("kv")
            .pkey(&pkey)
            .cert(&cert)
            .build2("")
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pfx.to_der().unwrap());
        let converted = secret_to_pem(Some("application/x-pkcs12"), &b64).unwrap();
        // The converted PEM loads as a client credential and as a notification key.
        crate::clients::entra::CertificateCredential::from_pem(
            &converted,
            crate::config::AssertionAlg::Ps256,
        )
        .unwrap();
        assert_eq!(
            crate::clients::graph::certs::KeyRing::from_pem(&converted)
                .unwrap()
                .keys()
                .len(),
            1
        );

        assert!(secret_to_pem(Some("application/x-pkcs12"), "not base64!").is_err());
        assert!(secret_to_pem(None, "aGVsbG8=").is_err());
    }
}
