//! Service Bus: how changes are published (`PUBLISH_MODE`, `PRESENCE_TOPIC`) and where an
//! edge receives them (`PRESENCE_SUBSCRIPTION`, `PRESENCE_QUEUE`), with one connection
//! string (`ServiceBusConnection`) and an endpoint override for tests (`SERVICEBUS_ENDPOINT`).

use secrecy::SecretString;
use url::Url;

use super::error::ConfigError;
use super::sources::Sources;
use super::values::HTTP;

/// How changes reach the topic (`PUBLISH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// The Functions `message` output binding (handler); in-process only (serve).
    Binding,
    /// Straight to Service Bus over REST, with `userId` as an application property so
    /// subscriptions can filter per user, and a MessageId for duplicate detection.
    Rest,
}

/// Service Bus.
#[derive(Debug)]
pub struct ServiceBusSettings {
    /// `ServiceBusConnection`.
    pub connection: Option<SecretString>,
    /// `PUBLISH_MODE` (`binding` or `rest`). Unset: `rest` in Azure (`WEBSITE_HOSTNAME` set)
    /// with a `ServiceBusConnection` connection string, `binding` everywhere else.
    pub publish_mode: PublishMode,
    /// `PRESENCE_TOPIC` (default `presence`).
    pub topic: String,
    /// `PRESENCE_SUBSCRIPTION`.
    pub subscription: Option<String>,
    /// `SERVICEBUS_ENDPOINT`.
    pub endpoint: Option<Url>,
    /// `PRESENCE_QUEUE`: for `subscribe` / `pbx run`, this edge's own queue instead of
    /// `PRESENCE_SUBSCRIPTION`.
    pub queue: Option<String>,
}

impl ServiceBusSettings {
    pub(super) fn parse(src: &Sources) -> Result<Self, ConfigError> {
        let connection = src.setting("ServiceBusConnection").secret();
        let publish_mode = match src.setting("PUBLISH_MODE").keyword(
            &[
                ("binding", PublishMode::Binding),
                ("rest", PublishMode::Rest),
            ],
            "`binding` or `rest`",
        )? {
            Some(mode) => mode,
            // In Azure a plain connection string can only be there for the REST publisher
            // (infra's binding is identity-based: ServiceBusConnection__*), and only REST
            // messages carry the `userId` the per-edge filters need. Under `func start`
            // the connection string serves the output binding the function declares, so
            // local runs keep the binding.
            None if connection.is_some() && src.get("WEBSITE_HOSTNAME").is_some() => {
                PublishMode::Rest
            }
            None => PublishMode::Binding,
        };
        Ok(Self {
            connection,
            publish_mode,
            topic: src
                .setting("PRESENCE_TOPIC")
                .text()
                .unwrap_or_else(|| "presence".into()),
            subscription: src.setting("PRESENCE_SUBSCRIPTION").text(),
            endpoint: src
                .setting("SERVICEBUS_ENDPOINT")
                .url(HTTP, "an http(s) URL")?,
            queue: src.setting("PRESENCE_QUEUE").trimmed(),
        })
    }
}
