//! Microsoft Graph (`GRAPH_ENDPOINT`) and where Graph and browsers reach this app
//! (`PUBLIC_BASE_URL`, `NOTIFICATION_CERTIFICATE_PATH`).

use std::path::PathBuf;

use url::Url;

use super::error::ConfigError;
use super::sources::Sources;
use super::values::{origin, HTTP};

/// Graph, and this app's public side.
#[derive(Debug)]
pub struct GraphSettings {
    /// `GRAPH_ENDPOINT`.
    pub endpoint: Url,
    /// `PUBLIC_BASE_URL`, or `https://$WEBSITE_HOSTNAME` in Azure.
    pub public_base_url: Option<Url>,
    /// `NOTIFICATION_CERTIFICATE_PATH`.
    pub notification_certificate_path: Option<PathBuf>,
}

impl GraphSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        let public_base_url = match src.get("PUBLIC_BASE_URL") {
            Some(v) => Some(origin("PUBLIC_BASE_URL", &v)?),
            None => match src.get("WEBSITE_HOSTNAME") {
                Some(h) => Some(origin("WEBSITE_HOSTNAME", &format!("https://{h}"))?),
                None => None,
            },
        };
        Ok(Self {
            endpoint: src
                .setting("GRAPH_ENDPOINT")
                .url(HTTP, "an http(s) URL")?
                .unwrap_or_else(|| Url::parse("https://graph.microsoft.com").unwrap()),
            public_base_url,
            notification_certificate_path: src.setting("NOTIFICATION_CERTIFICATE_PATH").path(),
        })
    }
}
