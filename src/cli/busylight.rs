//! The `busylight` subcommands: list the supported USB lights plugged in, and show a few
//! colours on them. Without the `busylight` cargo feature both say the build lacks it.

/// The one line a build without the feature prints.
#[cfg(not(feature = "busylight"))]
const NOT_BUILT: &str =
    "this build has no USB busylight support (the default build and the Pi builds have it)";

/// `busylight list`.
#[cfg(not(feature = "busylight"))]
pub fn list() -> anyhow::Result<()> {
    anyhow::bail!(NOT_BUILT)
}

/// `busylight test`.
#[cfg(not(feature = "busylight"))]
pub async fn test() -> anyhow::Result<()> {
    anyhow::bail!(NOT_BUILT)
}

/// `busylight list`: every supported light hidapi sees.
#[cfg(feature = "busylight")]
pub fn list() -> anyhow::Result<()> {
    use crate::clients::busylight::{device, protocol};
    let found = device::list()?;
    if found.is_empty() {
        println!("No supported busylight is plugged in.");
        println!("Supported (vendor:product):");
        for (v, p, m) in protocol::DEVICES {
            println!("  {v:04x}:{p:04x}  {}", m.name());
        }
    }
    for f in found {
        let product = f
            .product
            .as_deref()
            .map(|p| format!(" — \"{p}\""))
            .unwrap_or_default();
        // Found through /sys, which anyone may read; opening /dev/hidraw* needs the udev rule.
        let access = match device::can_open(&f) {
            Ok(()) => String::new(),
            Err(e) => format!(
                " (cannot open it: {e}; the udev rule 60-teams-presence-busylight.rules gives access)"
            ),
        };
        println!("{}{product}{access}", f.describe());
    }
    Ok(())
}

/// `busylight test`: red, yellow, green, then off, two seconds each, on every light.
#[cfg(feature = "busylight")]
pub async fn test() -> anyhow::Result<()> {
    use crate::clients::busylight::device;
    let colours: [(&str, [u8; 3]); 4] = [
        ("red", [255, 0, 0]),
        ("yellow", [255, 160, 0]),
        ("green", [0, 255, 0]),
        ("off", [0, 0, 0]),
    ];
    let mut any = false;
    for (i, (name, rgb)) in colours.into_iter().enumerate() {
        let results = tokio::task::spawn_blocking(move || device::show_once(rgb)).await??;
        if results.is_empty() {
            anyhow::bail!(
                "no supported busylight is plugged in (see `teams-presence busylight list`)"
            );
        }
        for (f, r) in results {
            match r {
                Ok(()) => {
                    any = true;
                    println!("{name:>6} → {}", f.describe());
                }
                Err(e) => println!("{name:>6} ✗ {}: {e}", f.describe()),
            }
        }
        if i + 1 < 4 {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
    if !any {
        anyhow::bail!(
            "no busylight took a command (permissions? the udev rule 60-teams-presence-busylight.rules gives access)"
        );
    }
    Ok(())
}
