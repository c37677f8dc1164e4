//! Who may use this app: sign in (`ALLOWED_TENANTS`, `ALLOWED_USERS`) and read presence and
//! the status page from elsewhere (`PRESENCE_API_TOKEN`).

use secrecy::SecretString;

use super::error::ConfigError;
use super::sources::Sources;

/// Access to `serve` and the sign-in.
#[derive(Debug)]
pub struct AccessSettings {
    /// `PRESENCE_API_TOKEN`: bearer token for `GET /api/presence/{id}` in `serve`.
    pub presence_api_token: Option<SecretString>,
    /// `ALLOWED_TENANTS` (comma separated tenant ids, lower case): when set, only users of
    /// these tenants may sign in.
    pub allowed_tenants: Vec<String>,
    /// `ALLOWED_USERS` (comma separated object ids or UPNs, lower case): when set, only these
    /// users may sign in.
    pub allowed_users: Vec<String>,
    /// `INGRESS_PROXY`: the one peer address whose requests to `serve`'s status page count as
    /// authenticated, because the proxy in front authenticated the person (Home Assistant's
    /// ingress proxy, 172.30.32.2). Compared with the socket's peer, never with a header.
    pub ingress_proxy: Option<std::net::IpAddr>,
}

impl AccessSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        Ok(Self {
            presence_api_token: src.setting("PRESENCE_API_TOKEN").secret(),
            allowed_tenants: src.setting("ALLOWED_TENANTS").lower_list(),
            allowed_users: src.setting("ALLOWED_USERS").lower_list(),
            ingress_proxy: src.setting("INGRESS_PROXY").parsed(
                "one IP address (Home Assistant's ingress proxy is 172.30.32.2)",
                |v| v.parse().ok(),
            )?,
        })
    }
}
