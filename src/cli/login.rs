//! `teams-presence login`: the device-code sign-in for `serve` on a headless machine (a Pi
//! without a browser). Prints the verification URL and code, waits with a progress indicator,
//! and stores the user in the same store `serve` uses.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::clients::entra::{validate_id_token, DevicePoll, TokenError};
use crate::config::Settings;

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(code.expires_in);
    let mut interval = Duration::from_secs(code.interval.max(1));
    let tokens = loop {
        tokio::time::sleep(interval.min(poll_cap)).await;
        if tokio::time::Instant::now() > deadline {
            writeln!(out)?;
            anyhow::bail!(
                "the code expired before sign-in finished; run `teams-presence login` again"
            );
        }
        match entra.poll_device_code(&code).await {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => interval += Duration::from_secs(5),
            Ok(DevicePoll::Done(t)) => break *t,
            Err(TokenError::Expired) => {
                writeln!(out)?;
                anyhow::bail!(
                    "the code expired before sign-in finished; run `teams-presence login` again"
                )
            }
            Err(TokenError::Declined) => {
                writeln!(out)?;
                anyhow::bail!("the sign-in was declined")
            }
            Err(TokenError::Transient(e)) => {
                tracing::debug!(error = %e, "device-code poll failed; retrying")
            }
            Err(e) => {
                writeln!(out)?;
                return Err(e).context("sign-in failed");
            }
        }
        write!(out, ".")?;
        out.flush()?;
    };
    writeln!(out)?;
    let id_token = tokens
        .id_token
        .as_deref()
        .context("no id_token came back: add `openid profile` to AUTH_SCOPES")?;
    let kid = crate::clients::graph::validation_token::key_id(id_token).unwrap_or_default();
    let keys = state.token_keys.keys_for(&[kid]).await?;
    let identity = validate_id_token(id_token, &keys, entra.client_id(), None, Utc::now())?;
    anyhow::ensure!(
        crate::engine::signins::allowed(&state.settings, &identity),
        "{} is not in ALLOWED_TENANTS / ALLOWED_USERS; nothing was stored",
        identity.upn
    );
    let user = state
        .tokens
        .store_sign_in(&identity, &tokens, Utc::now())
        .await?;
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
