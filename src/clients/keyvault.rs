//! Certificates from Azure Key Vault with the managed identity (cloud build only).
//!
//! A Key Vault certificate's private key is readable through the secret of the same name:
//! `application/x-pem-file` certificates come back as PEM (certificate and key), PKCS#12 ones
//! as base64 of a password-less PFX, which is converted to PEM here. Both the client
//! certificate (`KEY_VAULT_CLIENT_CERTIFICATE`) and the notification certificate
//! (`KEY_VAULT_NOTIFICATION_CERTIFICATE`) load this way at start-up.

use base64::Engine;

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

/// Loads the certificate named `name` from the vault at `vault_url` as PEM.
#[cfg(feature = "azure-sdk")]
pub async fn load_certificate_pem(
    vault_url: &url::Url,
    name: &str,
    identity_client_id: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use azure_identity::{
        ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    };
    use azure_security_keyvault_secrets::SecretClient;

    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: identity_client_id.map(|c| UserAssignedId::ClientId(c.to_owned())),
        ..Default::default()
    }))
    .context("cannot use the managed identity")?;
    let client = SecretClient::new(vault_url.as_str(), credential, None)
        .context("cannot create the Key Vault client")?;
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
