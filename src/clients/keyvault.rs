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
//!
//! A load that fails says why in [`LoadError`]'s words ([`classify`]): fit for a 503 line and
//! `/api/health`, with neither the vault's address nor anything Key Vault answered. Error
//! chains for the log name the vault by its host only, and a `KEY_VAULT_URL` that carries
//! more than the vault's address (user, password, query) is refused before any request.

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

/// Why a certificate did not load, in words for a 503 line and `/api/health`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The attempt took longer than the caller allowed (the caller sets this one).
    #[error("Key Vault did not answer within {0} s")]
    NoAnswer(u64),
    /// The connection failed or broke.
    #[error("cannot reach Key Vault")]
    Unreachable,
    /// The managed identity endpoint gave no token.
    #[error("the app's managed identity got no token for Key Vault (is the identity assigned to the app, and MANAGED_IDENTITY_CLIENT_ID its client id?)")]
    Identity,
    /// 401/403: the identity is not allowed to read the secret.
    #[error("Key Vault refused the app's identity ({0}): it needs the Key Vault Secrets User role on the vault (a new role assignment can take minutes to apply)")]
    Refused(u16),
    /// 404: no such certificate.
    #[error("Key Vault has no certificate by that name (404)")]
    NotFound,
    /// 429: Key Vault is throttling this client.
    #[error("Key Vault is throttling (429)")]
    Throttled,
    /// Any other status.
    #[error("Key Vault answered {0}")]
    Status(u16),
    /// The secret is there but is no usable certificate with its private key.
    #[error("the certificate in Key Vault is unusable: {0}")]
    Unusable(String),
    /// `KEY_VAULT_URL` holds more than a vault's address; nothing was sent.
    #[error("KEY_VAULT_URL must be the vault's address only (https://NAME.vault.azure.net), without user, password, query or fragment")]
    BadUrl,
    /// This build has no Key Vault client.
    #[error("Key Vault needs the cloud build (default features); use certificate files instead")]
    NotBuilt,
    /// Anything else (the log has the details).
    #[error("the load failed (the handler's log has the details)")]
    Other,
}

impl LoadError {
    /// Whether trying again can help: not for a build or a setting that cannot work.
    pub fn is_permanent(&self) -> bool {
        matches!(self, LoadError::BadUrl | LoadError::NotBuilt)
    }
}

/// The [`LoadError`] an error chain from [`load_certificate_pem`] or
/// [`load_certificate_versions`] stands for.
pub fn classify(e: &anyhow::Error) -> LoadError {
    for cause in e.chain() {
        if let Some(known) = cause.downcast_ref::<LoadError>() {
            return known.clone();
        }
        #[cfg(feature = "azure-sdk")]
        if let Some(sdk) = cause.downcast_ref::<azure_core::Error>() {
            return classify_sdk(sdk);
        }
    }
    LoadError::Other
}

#[cfg(feature = "azure-sdk")]
fn classify_sdk(e: &azure_core::Error) -> LoadError {
    use azure_core::error::ErrorKind;
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => match u16::from(*status) {
            401 | 403 => LoadError::Refused(u16::from(*status)),
            404 => LoadError::NotFound,
            429 => LoadError::Throttled,
            other => LoadError::Status(other),
        },
        ErrorKind::Credential => LoadError::Identity,
        ErrorKind::Connection | ErrorKind::Io => LoadError::Unreachable,
        _ => LoadError::Other,
    }
}

/// The vault's address, checked: http(s), a host, nothing else that could be a secret.
pub fn checked_vault_url(url: &url::Url) -> Result<&url::Url, LoadError> {
    let clean = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if clean {
        Ok(url)
    } else {
        Err(LoadError::BadUrl)
    }
}

/// The vault as error chains name it: its host.
#[cfg(feature = "azure-sdk")]
fn vault_host(url: &url::Url) -> &str {
    url.host_str().unwrap_or("(no host)")
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
    let vault_url = checked_vault_url(vault_url)?;
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
    let host = vault_host(vault_url);
    let secret = client
        .get_secret(name, None)
        .await
        .with_context(|| format!("cannot read certificate {name} from Key Vault {host}"))?
        .into_model()
        .with_context(|| format!("Key Vault answered with an unreadable secret for {name}"))?;
    let value = secret
        .value
        .ok_or_else(|| LoadError::Unusable("the secret has no value".into()))?;
    secret_to_pem(secret.content_type.as_deref(), &value).map_err(|e| {
        anyhow::Error::new(LoadError::Unusable(e)).context(format!("certificate {name}"))
    })
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
    let host = vault_host(vault_url);
    let current = client
        .get_secret(name, None)
        .await
        .with_context(|| format!("cannot read certificate {name} from Key Vault {host}"))?
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
        .ok_or_else(|| LoadError::Unusable("the secret has no value".into()))?;
    let pem = secret_to_pem(current.content_type.as_deref(), value).map_err(|e| {
        anyhow::Error::new(LoadError::Unusable(e)).context(format!("certificate {name}"))
    })?;

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
    Err(LoadError::NotBuilt.into())
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

    #[test]
    fn a_vault_url_with_more_than_the_address_is_refused_before_any_request() {
        for good in [
            "https://kv-tp.vault.azure.net",
            "https://kv-tp.vault.azure.net/",
        ] {
            let u = url::Url::parse(good).unwrap();
            assert!(checked_vault_url(&u).is_ok(), "{good}");
        }
        for bad in [
            "https://user:pass@kv-tp.vault.azure.net",
            "https://kv-tp.vault.azure.net/?sig=abc",
            "https://kv-tp.vault.azure.net/#x",
            "ftp://kv-tp.vault.azure.net",
        ] {
            let u = url::Url::parse(bad).unwrap();
            assert_eq!(checked_vault_url(&u), Err(LoadError::BadUrl), "{bad}");
        }
        let line = LoadError::BadUrl.to_string();
        assert!(
            !line.contains("user:pass") && !line.contains("sig=abc"),
            "{line}"
        );
        assert!(LoadError::BadUrl.is_permanent() && LoadError::NotBuilt.is_permanent());
        assert!(!LoadError::Refused(403).is_permanent() && !LoadError::NoAnswer(10).is_permanent());
    }

    #[test]
    fn a_failed_load_is_classified_through_its_context() {
        use anyhow::Context;
        let unusable =
            anyhow::Error::new(LoadError::Unusable("no key".into())).context("certificate c");
        assert_eq!(classify(&unusable), LoadError::Unusable("no key".into()));
        let other: anyhow::Result<()> = Err(anyhow::anyhow!("boom")).context("reading");
        assert_eq!(classify(&other.unwrap_err()), LoadError::Other);
        #[cfg(feature = "azure-sdk")]
        {
            use azure_core::error::ErrorKind;
            use azure_core::http::StatusCode;
            let status = |code: u16| ErrorKind::HttpResponse {
                status: StatusCode::from(code),
                error_code: None,
                raw_response: None,
            };
            let cases = [
                (status(403), LoadError::Refused(403)),
                (status(401), LoadError::Refused(401)),
                (status(404), LoadError::NotFound),
                (status(429), LoadError::Throttled),
                (status(503), LoadError::Status(503)),
                (ErrorKind::Credential, LoadError::Identity),
                (ErrorKind::Connection, LoadError::Unreachable),
                (ErrorKind::Io, LoadError::Unreachable),
                (ErrorKind::DataConversion, LoadError::Other),
            ];
            for (kind, want) in cases {
                let e = azure_core::Error::with_message(kind, "detail with https://kv/secrets/x");
                let chained = Err::<(), _>(e)
                    .context("cannot read certificate c from Key Vault kv")
                    .unwrap_err();
                let got = classify(&chained);
                assert_eq!(got, want);
                assert!(!got.to_string().contains("https://"), "{got}");
            }
        }
        #[cfg(not(feature = "azure-sdk"))]
        {
            let e = futures_util::FutureExt::now_or_never(load_certificate_pem(
                &url::Url::parse("https://kv.vault.azure.net").unwrap(),
                "c",
                None,
            ))
            .unwrap()
            .unwrap_err();
            assert_eq!(classify(&e), LoadError::NotBuilt);
        }
    }
}
