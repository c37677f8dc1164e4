//! A fake PBX that takes status changes over HTTP (what `PBX_HTTP_SET_URL` points at): it
//! records every request (method, path and query, headers, body, time) and answers from a
//! script of statuses (`500` then `204`, `429` with `Retry-After`, a slow answer, ...),
//! falling back to 204 when the script is empty.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status, no body.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RetryAfter(u64),
    /// Wait this long, then 204 (a client with a shorter timeout gives up first).
    Slow(Duration),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When (tokio's clock).
    pub at: Instant,
    /// The HTTP method.
    pub method: Method,
    /// Path and query, as sent (still percent-encoded).
    pub path_and_query: String,
    /// Every header.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if it was not JSON).
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    script: Vec<Answer>,
    received: Vec<Received>,
}

/// A running fake PBX receiver.
#[derive(Clone)]
pub struct FakePbxReceiver {
    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakePbxReceiver {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut s = inner.lock().unwrap();
        s.received.push(Received {
            at: Instant::now(),
            method,
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
        if s.script.is_empty() {
            Answer::Status(204)
        } else {
            s.script.remove(0)
        }
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", secs.to_string())],
        )
            .into_response(),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}
