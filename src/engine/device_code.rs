//! The device-code sign-in (RFC 8628) once the code is shown: polling Entra ID until the
//! person has entered it, then checking the id_token, `ALLOWED_TENANTS` / `ALLOWED_USERS`, and
//! storing the user, as the browser sign-in does. `teams-presence login` prints the code on a
//! terminal; `serve`'s status page shows it (`crate::http::device`). Both wait here.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;

use crate::clients::entra::{validate_id_token, DeviceCode, DevicePoll, EntraClient, TokenError};
use crate::clients::graph::validation_token::JwksCache;
use crate::engine::context::Context;
use crate::store::UserRecord;

/// Why a device-code sign-in ended without a user, split by what the person does next.
#[derive(Debug, thiserror::Error)]
pub enum DeviceSignInError {
    /// Nobody entered the code in time: start again.
    #[error("the code expired before sign-in finished")]
    Expired,
    /// The person declined on Microsoft's page.
    #[error("the sign-in was declined")]
    Declined,
    /// Signed in, but not someone this installation lets in; nothing was stored.
    #[error("{0} is not in ALLOWED_TENANTS / ALLOWED_USERS; nothing was stored")]
    NotAllowed(String),
    /// Entra ID refused the request, or the answer could not be checked or stored.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Polls until the person finished (at the interval Entra asks for, at most `poll_cap`
/// apart; `tick` runs after each poll still pending), then stores the signed-in user.
pub async fn finish(
    ctx: &Context,
    signing_keys: &JwksCache,
    entra: &EntraClient,
    code: &DeviceCode,
    poll_cap: Duration,
    mut tick: impl FnMut() + Send,
) -> Result<UserRecord, DeviceSignInError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(code.expires_in);
    let mut interval = Duration::from_secs(code.interval.max(1));
    let tokens = loop {
        tokio::time::sleep(interval.min(poll_cap)).await;
        if tokio::time::Instant::now() > deadline {
            return Err(DeviceSignInError::Expired);
        }
        match entra.poll_device_code(code).await {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => interval += Duration::from_secs(5),
            Ok(DevicePoll::Done(t)) => break *t,
            Err(TokenError::Expired) => return Err(DeviceSignInError::Expired),
            Err(TokenError::Declined) => return Err(DeviceSignInError::Declined),
            Err(TokenError::Transient(e)) => {
                tracing::debug!(error = %e, "device-code poll failed; retrying")
            }
            Err(e) => return Err(anyhow::Error::new(e).context("sign-in failed").into()),
        }
        tick();
    };
    let id_token = tokens
        .id_token
        .as_deref()
        .context("no id_token came back: add `openid profile` to AUTH_SCOPES")?;
    let kid = crate::clients::graph::validation_token::key_id(id_token).unwrap_or_default();
    let keys = signing_keys
        .keys_for(&[kid])
        .await
        .map_err(anyhow::Error::from)?;
    let identity = validate_id_token(id_token, &keys, entra.client_id(), None, Utc::now())
        .map_err(anyhow::Error::from)?;
    if !crate::engine::signins::allowed(&ctx.settings, &identity) {
        return Err(DeviceSignInError::NotAllowed(identity.upn));
    }
    Ok(ctx
        .tokens
        .store_sign_in(&identity, &tokens, Utc::now())
        .await
        .map_err(anyhow::Error::from)?)
}

/// Where a device-code sign-in started from `serve`'s status page stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// The code is being requested from Entra ID.
    Starting,
    /// Shown on the page until the person enters it, or it expires.
    Waiting {
        /// What the person types.
        user_code: String,
        /// Where they type it (Microsoft's page).
        verification_uri: String,
        /// When the code stops working.
        expires_at: chrono::DateTime<Utc>,
    },
    /// Done: who signed in.
    SignedIn {
        /// Display name (or UPN).
        who: String,
        /// When.
        at: chrono::DateTime<Utc>,
    },
    /// Ended without a user, and why (fixed text, setting names, Entra's error code).
    Failed {
        /// What went wrong, for the page.
        reason: String,
        /// When.
        at: chrono::DateTime<Utc>,
    },
}

/// `serve`'s device-code sign-in from the status page: one at a time, and the form token the
/// page's button posts (a page on another site cannot read it, so it cannot start one through
/// a visitor's browser).
#[derive(Debug)]
pub struct PageSignIn {
    flow: std::sync::Mutex<Option<Flow>>,
    form_token: String,
}

impl Default for PageSignIn {
    fn default() -> Self {
        Self {
            flow: std::sync::Mutex::new(None),
            form_token: crate::clients::entra::random_token(24),
        }
    }
}

impl PageSignIn {
    /// The token the page's form carries.
    pub fn form_token(&self) -> &str {
        &self.form_token
    }

    /// Whether a posted form token is this process's (compared in constant time).
    pub fn form_token_matches(&self, given: &str) -> bool {
        given.len() == self.form_token.len()
            && openssl::memcmp::eq(given.as_bytes(), self.form_token.as_bytes())
    }

    /// The flow as it stands.
    pub fn current(&self) -> Option<Flow> {
        self.lock().clone()
    }

    /// Claims the one slot: `false` while another flow is starting or its code is still
    /// valid at `now` (the page then shows that one).
    pub fn begin(&self, now: chrono::DateTime<Utc>) -> bool {
        let mut flow = self.lock();
        let busy = match &*flow {
            Some(Flow::Starting) => true,
            Some(Flow::Waiting { expires_at, .. }) => *expires_at > now,
            _ => false,
        };
        if !busy {
            *flow = Some(Flow::Starting);
        }
        !busy
    }

    /// Records where the flow stands now.
    pub fn set(&self, next: Flow) {
        *self.lock() = Some(next);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Flow>> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_sign_in_runs_at_a_time_until_its_code_expires() {
        let p = PageSignIn::default();
        let t0 = Utc::now();
        assert!(p.begin(t0));
        assert!(!p.begin(t0), "a second click while the code is requested");
        p.set(Flow::Waiting {
            user_code: "ABCD-EFGH".into(),
            verification_uri: "https://microsoft.com/devicelogin".into(),
            expires_at: t0 + chrono::Duration::minutes(15),
        });
        assert!(!p.begin(t0 + chrono::Duration::minutes(14)));
        assert!(p.begin(t0 + chrono::Duration::minutes(16)), "expired code");
        p.set(Flow::Failed {
            reason: "x".into(),
            at: t0,
        });
        assert!(p.begin(t0), "after a failure");
    }

    #[test]
    fn the_form_token_is_random_and_checked_exactly() {
        let (a, b) = (PageSignIn::default(), PageSignIn::default());
        assert_ne!(a.form_token(), b.form_token());
        assert!(a.form_token().len() >= 32);
        assert!(a.form_token_matches(a.form_token()));
        assert!(!a.form_token_matches(b.form_token()));
        assert!(!a.form_token_matches(""));
        assert!(!a.form_token_matches(&a.form_token()[1..]));
    }
}
