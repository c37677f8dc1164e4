//! A loopback HTTP/1.1 proxy in front of Azurite that records every request and can drop a
//! response after Azurite has already committed the request: the "write succeeded, the
//! answer was lost" case a retrying client must tell apart from a lost race.
//!
//! One request per connection (it forwards with `Connection: close`), which is all the
//! Table client needs and keeps the parsing to headers plus `Content-Length`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw and what it should do next.
#[derive(Default)]
pub struct ProxyState {
    /// `(method, path)` of every request forwarded, in order.
    pub requests: Vec<(String, String)>,
    /// Drop the response of the next request with this method (after forwarding it).
    pub drop_next: Option<String>,
}

/// The running proxy.
pub struct TableProxy {
    /// `TableEndpoint` for a connection string (`http://127.0.0.1:port/devstoreaccount1`).
    pub endpoint: String,
    /// Shared with the proxy task.
    pub state: Arc<Mutex<ProxyState>>,
}

impl TableProxy {
    /// Starts a proxy in front of the Azurite at `upstream` (`127.0.0.1:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, upstream.clone(), st.clone()));
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}/devstoreaccount1"),
            state,
        }
    }

    /// A connection string for this proxy, from Azurite's.
    pub fn connection_string(&self, azurite: &str) -> String {
        azurite
            .split(';')
            .map(|kv| {
                if kv.starts_with("TableEndpoint=") {
                    format!("TableEndpoint={}", self.endpoint)
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// `http://127.0.0.1:port`: the proxy in front of any loopback HTTP/1.1 service (the
    /// Service Bus or Graph fake), to count its requests too.
    pub fn base(&self) -> String {
        self.endpoint
            .trim_end_matches("/devstoreaccount1")
            .to_owned()
    }

    /// Every `(method, path)` forwarded so far, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests seen so far whose method is `method` and path contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p)| m == method && p.contains(needle))
            .count()
    }
}

/// The `host:port` of Azurite in its connection string.
pub fn upstream_of(connection_string: &str) -> String {
    let ep = connection_string
        .split(';')
        .find_map(|kv| kv.strip_prefix("TableEndpoint="))
        .unwrap();
    ep.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

async fn handle(mut conn: TcpStream, upstream: String, state: Arc<Mutex<ProxyState>>) {
    let Some(req) = read_request(&mut conn).await else {
        return;
    };
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&req[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let mut parts = first.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    // Same request, one per connection upstream.
    let mut out = format!("{first}\r\n");
    for l in lines.filter(|l| !l.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&req[head_end + 4..]);
    let drop = {
        let mut st = state.lock().unwrap();
        st.requests.push((method.clone(), path));
        if st.drop_next.as_deref() == Some(method.as_str()) {
            st.drop_next = None;
            true
        } else {
            false
        }
    };
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        return;
    };
    if up.write_all(&out).await.is_err() {
        return;
    }
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp).await;
    if drop {
        // Azurite committed it; the client never hears so.
        return;
    }
    let _ = conn.write_all(&resp).await;
    let _ = conn.shutdown().await;
}
