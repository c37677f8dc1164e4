//! The `hue` subcommands: pair, discover, list, test. Printing happens here and only here;
//! the application key is printed exactly once, by `pair`, because that is its purpose.

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::clients::hue::{discover as disc, Address, HueError, HueSink};
use crate::config::{ConfigError, Settings};

/// How long `pair` keeps trying (the bridge's link-button window is about 30 s).
const PAIR_SECONDS: u64 = 30;

fn address(settings: &Settings) -> Result<Address, ConfigError> {
    Address::parse_setting(settings.require_hue_bridge()?)
}

fn key(settings: &Settings) -> Result<SecretString, ConfigError> {
    settings.require_hue_application_key().cloned()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// `hue pair`: retries every second for 30 s until the link button is pressed.
pub async fn pair(settings: &Settings) -> anyhow::Result<()> {
    let address = address(settings)?;
    let (http, base) = crate::clients::hue::pairing_endpoint(&address).await?;
    let devicetype = crate::clients::hue::devicetype(&hostname());
    eprintln!("Press the link button on the Hue bridge now.");
    for left in (1..=PAIR_SECONDS).rev() {
        match crate::clients::hue::pair_once(&http, &base, &devicetype).await {
            Ok(Some(key)) => {
                println!("{}", key.expose_secret());
                eprintln!(
                    "\nPaired as {devicetype}. Put the line above into HUE_APPLICATION_KEY \
                     (e.g. in pi.env); it is shown only this once."
                );
                return Ok(());
            }
            Ok(None) => eprint!("\rWaiting for the link button... {left:2} s left "),
            Err(e) => return Err(e).context("pairing failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!();
    anyhow::bail!("the link button was not pressed within {PAIR_SECONDS} s; press it and run `hue pair` again")
}

/// `hue discover`: mDNS first, then Hue's discovery endpoint (`HUE_DISCOVERY_URL` overrides
/// it, for tests and for networks with a local mirror).
pub async fn discover() -> anyhow::Result<()> {
    let mut found = match disc::mdns(Duration::from_secs(3)).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mDNS query failed ({e}); asking the discovery endpoint");
            Vec::new()
        }
    };
    if found.is_empty() {
        let base = std::env::var("HUE_DISCOVERY_URL")
            .ok()
            .and_then(|u| Url::parse(&u).ok())
            .unwrap_or_else(|| Url::parse("https://discovery.meethue.com/").expect("valid"));
        found = disc::cloud(&base)
            .await
            .map_err(|e| anyhow::anyhow!("the discovery endpoint failed: {}", e.without_url()))?;
    }
    if found.is_empty() {
        anyhow::bail!("no bridge found; is this machine on the bridge's network?");
    }
    for f in found {
        println!(
            "{}\tid {}\t(via {})",
            f.address,
            f.id.as_deref().unwrap_or("?"),
            f.via
        );
    }
    eprintln!("Put the address into HUE_BRIDGE, then run `teams-presence hue pair`.");
    Ok(())
}

/// `hue list`: lights, rooms and zones as HUE_TARGETS entries, each with what it can show;
/// rooms and zones the bridge gives no grouped_light come last, marked `# `.
pub async fn list(settings: &Settings) -> anyhow::Result<()> {
    let bridge = crate::clients::hue::connect(&address(settings)?, &key(settings)?).await?;
    let inventory = bridge.inventory().await?;
    eprintln!("CLIP {} bridge. HUE_TARGETS entries:", bridge.api());
    for (target, name, detail) in inventory.listing() {
        println!("{target}\t{name}\t{detail}");
    }
    Ok(())
}

/// `hue test`: every configured state on the targets in turn, 3 s each.
pub async fn test(settings: &Settings) -> anyhow::Result<()> {
    let lights = crate::engine::applier::lights_from(settings)?;
    let targets = settings.require_hue_targets()?;
    let mut sink = HueSink::connect(&address(settings)?, &key(settings)?, targets).await?;
    for (name, state) in lights.showcase() {
        println!("{name}");
        match sink.apply(&state).await {
            Ok(()) => {
                for p in sink.problems() {
                    eprintln!("  {p}");
                }
            }
            Err(e @ HueError::Unauthorized) => return Err(e.into()),
            Err(e) => eprintln!("  failed: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(())
}
