//! Who may read `serve`'s status page (`/`) and `/api/status`: they show every signed-in
//! person's name, UPN and presence, and `serve`'s port is often reachable from outside (a
//! tunnel for change notifications). So they answer only on loopback, or with a credential:
//! `PRESENCE_API_TOKEN`, or the admin token `serve` generates into its data directory.
//!
//! The credential comes as `Authorization: Bearer <token>`, a `presence_token` cookie, or
//! once as `?token=<token>`: that answers with a redirect to the same page without the token
//! in the address and sets the cookie (HttpOnly, SameSite=Strict), so a phone's browser keeps
//! using the page. The redirect is relative, as every link of the page is, so the page also
//! works below a path prefix (Home Assistant's ingress, `/api/hassio_ingress/<token>/`).
//!
//! Behind an authenticating proxy (Home Assistant's ingress: only people signed in to Home
//! Assistant reach the add-on through it) `INGRESS_PROXY` names that proxy's address, and a
//! request whose socket peer is exactly that address is let in. Other containers on the same
//! network reach the same port from other addresses and still need a token; no header a
//! client can write (`X-Forwarded-For`, `X-Remote-User-Id`) counts.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};

use crate::http::html::{Frame, NOTICE_CSS};
use crate::http::state::{AppState, Mode};

/// The cookie that carries the token after `?token=`.
pub const COOKIE: &str = "presence_token";

/// Whether a peer address is this machine (IPv4 127.0.0.0/8, IPv6 ::1, or either mapped).
/// Pure, so the decision is tested with a table; the address comes from the socket, never
/// from a header a client could write.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// What a request may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// Served.
    Allowed,
    /// A valid `?token=`: redirect to `location` and set the cookie.
    SetCookie {
        /// The same path without the query.
        location: String,
    },
    /// 401, nothing personal in the answer.
    Denied,
}

fn same(given: &str, expected: &SecretString) -> bool {
    let expected = expected.expose_secret();
    !given.is_empty()
        && given.len() == expected.len()
        && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

/// Whether `peer` is the configured authenticating proxy (an IPv4 peer may arrive mapped
/// into IPv6 on a dual-stack socket).
pub fn is_trusted_proxy(peer: IpAddr, proxy: Option<IpAddr>) -> bool {
    proxy.is_some_and(|p| p.to_canonical() == peer.to_canonical())
}

/// Where the `?token=` redirect goes: the same page, relative (`./` for a folder, `./status`
/// for `/api/status`), so a path prefix in front of the server stays.
fn relative_location(path: &str) -> String {
    format!("./{}", path.rsplit('/').next().unwrap_or_default())
}

/// The decision: a local peer, the trusted proxy (`INGRESS_PROXY`), or one of `tokens` in the
/// bearer header, the cookie or the query. `peer` is `None` when the server was started
/// without connection info: not local.
pub fn decide(
    peer: Option<IpAddr>,
    trusted_proxy: Option<IpAddr>,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    tokens: &[&SecretString],
) -> Access {
    if peer.is_some_and(|p| is_local(p) || is_trusted_proxy(p, trusted_proxy)) {
        return Access::Allowed;
    }
    let valid = |given: &str| tokens.iter().any(|t| same(given, t));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(valid) {
        return Access::Allowed;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(valid);
    if cookie {
        return Access::Allowed;
    }
    let from_query = query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .any(|(k, v)| k == "token" && valid(&v));
    if from_query {
        return Access::SetCookie {
            location: relative_location(path),
        };
    }
    Access::Denied
}

/// The middleware on `/` and `/api/status` (only `serve` has them; under the Functions
/// host they answer 404 by themselves).
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.mode != Mode::Serve {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let tokens: Vec<&SecretString> = [
        state.settings.access.presence_api_token.as_ref(),
        state.admin_token.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let uri = req.uri();
    match decide(
        peer,
        state.settings.access.ingress_proxy,
        req.headers(),
        uri.path(),
        uri.query(),
        &tokens,
    ) {
        Access::Allowed => next.run(req).await,
        Access::SetCookie { location } => {
            let secure = req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let token = state
                .settings
                .access
                .presence_api_token
                .as_ref()
                .into_iter()
                .chain(state.admin_token.as_ref())
                .find(|t| {
                    uri.query().is_some_and(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .any(|(k, v)| k == "token" && same(&v, t))
                    })
                })
                .map(|t| t.expose_secret().to_owned())
                .unwrap_or_default();
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{}",
                if secure { "; Secure" } else { "" }
            );
            let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Access::Denied => denied(req.uri().path()),
    }
}

fn denied(path: &str) -> Response {
    let www = [(header::WWW_AUTHENTICATE, "Bearer")];
    if path.starts_with("/api/") {
        return (
            StatusCode::UNAUTHORIZED,
            www,
            Json(serde_json::json!({
                "error": "unauthorized",
                "message": "the status answers only on this machine, or with a bearer token (PRESENCE_API_TOKEN or the admin token in serve's data directory)"
            })),
        )
            .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        www,
        Frame::new("teams-presence", NOTICE_CSS).render("<p>This page shows people's presence, so it answers only on the machine that runs <code>serve</code>, or with its token: open <code>/?token=&lt;token&gt;</code> once (the token is <code>PRESENCE_API_TOKEN</code>, or the one in <code>admin-token</code> in the data directory, printed at first start).</p>"),

    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_local() {
        let cases = [
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false),
            ("10.0.0.2", false),
            ("192.168.1.20", false),
            ("172.17.0.1", false),
            ("::", false),
            ("::ffff:192.168.1.20", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
        ];
        for (ip, local) in cases {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }

    #[test]
    fn a_remote_peer_needs_a_valid_token_in_a_header_cookie_or_query() {
        let token = SecretString::from("s3cret-token");
        let tokens = [&token];
        let remote: Option<IpAddr> = Some("203.0.113.9".parse().unwrap());
        let h = |k: header::HeaderName, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(k, v.parse().unwrap());
            m
        };
        let none = HeaderMap::new();
        let cases: [(Option<IpAddr>, HeaderMap, Option<&str>, Access); 10] = [
            (
                Some("127.0.0.1".parse().unwrap()),
                none.clone(),
                None,
                Access::Allowed,
            ),
            (remote, none.clone(), None, Access::Denied),
            (None, none.clone(), None, Access::Denied),
            (
                remote,
                h(header::AUTHORIZATION, "Bearer s3cret-token"),
                None,
                Access::Allowed,
            ),
            (
                remote,
                h(header::AUTHORIZATION, "Bearer s3cret-tokeX"),
                None,
                Access::Denied,
            ),
            (
                remote,
                h(header::AUTHORIZATION, "Bearer "),
                None,
                Access::Denied,
            ),
            (
                remote,
                h(header::COOKIE, "a=b; presence_token=s3cret-token"),
                None,
                Access::Allowed,
            ),
            (
                remote,
                h(header::COOKIE, "presence_token=nope"),
                None,
                Access::Denied,
            ),
            (
                remote,
                none.clone(),
                Some("token=s3cret-token"),
                Access::SetCookie {
                    location: "./".into(),
                },
            ),
            (remote, none.clone(), Some("token=wrong"), Access::Denied),
        ];
        for (i, (peer, headers, query, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                decide(peer, None, &headers, "/", query, &tokens),
                want,
                "case {i}"
            );
        }
        // No token configured at all: a remote peer is always refused.
        assert_eq!(
            decide(
                remote,
                None,
                &h(header::AUTHORIZATION, "Bearer "),
                "/",
                Some("token="),
                &[]
            ),
            Access::Denied
        );
    }

    #[test]
    fn only_the_ingress_proxy_itself_is_let_in_without_a_token() {
        let proxy: Option<IpAddr> = Some("172.30.32.2".parse().unwrap());
        // Headers a client (or another add-on) could write to look like the proxy.
        let mut forged = HeaderMap::new();
        forged.insert("x-forwarded-for", "172.30.32.2".parse().unwrap());
        forged.insert("x-remote-user-id", "0123456789abcdef".parse().unwrap());
        forged.insert("x-ingress-path", "/api/hassio_ingress/x".parse().unwrap());
        let cases: [(&str, Option<IpAddr>, Access); 7] = [
            ("172.30.32.2", proxy, Access::Allowed),
            ("::ffff:172.30.32.2", proxy, Access::Allowed),
            // Another add-on on the same Docker network.
            ("172.30.33.5", proxy, Access::Denied),
            ("172.30.32.1", proxy, Access::Denied),
            ("192.168.1.20", proxy, Access::Denied),
            // No INGRESS_PROXY: the proxy's address is just another remote peer.
            ("172.30.32.2", None, Access::Denied),
            ("127.0.0.1", proxy, Access::Allowed),
        ];
        for (peer, trusted, want) in cases {
            assert_eq!(
                decide(
                    Some(peer.parse().unwrap()),
                    trusted,
                    &forged,
                    "/",
                    None,
                    &[]
                ),
                want,
                "{peer} with {trusted:?}"
            );
        }
    }

    #[test]
    fn the_token_redirect_stays_below_a_path_prefix() {
        assert_eq!(relative_location("/"), "./");
        assert_eq!(relative_location("/api/status"), "./status");
        assert_eq!(relative_location(""), "./");
    }
}
