//! `teams-presence login`: the device-code sign-in for `serve` on a headless machine (a Pi
//! without a browser). Prints the verification URL and code, waits with a progress indicator,
//! and stores the user in the same store `serve` uses.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::engine::device_code::DeviceSignInError;

/// Runs the device-code flow. `poll_cap` caps the wait between polls (tests shorten it).
pub async fn run(
    settings: Settings,
    data_dir: &Path,
    out: &mut (dyn Write + Send),
    poll_cap: Duration,
) -> anyhow::Result<()> {
    let state = crate::serve::build_state(settings, data_dir).await?;
    let entra = state.tokens.entra()?.clone();
    let code = entra
        .device_code()
        .await
        .context("cannot start the device-code sign-in")?;
    writeln!(
        out,
        "To sign in, open {} and enter the code {}",
        code.verification_uri, code.user_code
    )?;
    writeln!(
        out,
        "(The app registration needs \"Allow public client flows\" turned on.)"
    )?;
    write!(out, "Waiting for you to finish")?;
    out.flush()?;
    let result = {
        let dots = &mut *out;
        crate::engine::device_code::finish(
            &state.ctx,
            &state.token_keys,
            &entra,
            &code,
            poll_cap,
            move || {
                let _ = write!(dots, ".");
                let _ = dots.flush();
            },
        )
        .await
    };
    writeln!(out)?;
    let user = match result {
        Ok(user) => user,
        Err(DeviceSignInError::Expired) => anyhow::bail!(
            "the code expired before sign-in finished; run `teams-presence login` again"
        ),
        Err(e) => return Err(e.into()),
    };
    let name = if user.display_name.is_empty() {
        &user.upn
    } else {
        &user.display_name
    };
    writeln!(
        out,
        "Signed in as {name} ({}). `teams-presence serve` will now follow this presence.",
        user.upn
    )?;
    Ok(())
}
