//! Issue 13, item 9: a bridge whose HTTPS certificate does not verify (someone on the LAN
//! answering in its place) used to make the client fall back to v1 over plain HTTP, sending
//! the application key in clear. Now it is an error, and nothing is sent on port 80.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openssl::ssl::{SslAcceptor, SslMethod};
use secrecy::SecretString;
use teams_presence::clients::hue::{connect_on, Address, HostPorts};

/// A TLS server with a self-signed certificate that answers every request like a bridge.
fn bad_tls_bridge() -> u16 {
    let key =
        teams_presence::clients::graph::certs::generate_self_signed("001788fffe000000").unwrap();
    let pem = key.to_pem().unwrap();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor
        .set_certificate(&openssl::x509::X509::from_pem(&pem).unwrap())
        .unwrap();
    acceptor
        .set_private_key(&openssl::pkey::PKey::private_key_from_pem(&pem).unwrap())
        .unwrap();
    let acceptor = Arc::new(acceptor.build());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                let Ok(mut tls) = acceptor.accept(conn) else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf);
                let body = r#"{"bridgeid":"001788FFFE000000","name":"Hue","apiversion":"1.60.0"}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A plain-HTTP listener that only counts connections (the key would arrive here).
fn counting_http() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            s.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (port, seen)
}

#[tokio::test]
async fn hue_bridge_with_a_bad_certificate_is_an_error_and_nothing_goes_over_http() {
    let https = bad_tls_bridge();
    let (http, seen) = counting_http();
    let key = SecretString::from("app-key-that-must-not-leak".to_owned());
    let got = connect_on(
        &Address::Host("127.0.0.1".into()),
        &key,
        HostPorts { https, http },
    )
    .await;
    assert!(got.is_err(), "connected despite the certificate");
    let msg = got.err().unwrap().to_string();
    assert!(!msg.contains("app-key"), "{msg}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "something was sent over plain HTTP"
    );
}

/// Issue 13, item 9: once a bridge answered CLIP v2 over verified HTTPS (remembered in the
/// edge's state file), an attacker who blocks its port 443 must not get a first connection
/// over plain HTTP either.
#[tokio::test]
async fn a_bridge_remembered_as_v2_is_never_used_over_http_when_https_is_blocked() {
    let (http, seen) = counting_http();
    // A port with nothing listening: HTTPS "blocked".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("edge-state.json");
    std::fs::write(&state, r#"{"users":{},"v2_bridges":["127.0.0.1"]}"#).unwrap();
    let settings = crate::support::settings(&[
        ("HUE_BRIDGE", "127.0.0.1"),
        ("HUE_APPLICATION_KEY", "app-key-that-must-not-leak"),
        ("HUE_TARGETS", "light:1"),
    ]);
    let got = teams_presence::engine::applier::Applier::from_settings_on(
        &settings,
        Some(state),
        HostPorts {
            https: closed,
            http,
        },
    )
    .await;
    assert!(got.is_err(), "connected over plain HTTP");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "something was sent over plain HTTP"
    );
}
