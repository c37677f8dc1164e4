//! The generic HTTP PBX adapter's outbound side against a loopback fake PBX: the request
//! it builds (method, URL, body, Basic auth, extra headers) and when it retries.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use teams_presence::clients::pbx::http_out::{HttpPbx, HttpPbxConfig, HttpPbxError};
use teams_presence::core::pbx::model::{Extension, Profile};

use crate::fakes::pbx_receiver::{Answer, FakePbxReceiver};
use crate::support;

const APP_GUID: &str = "5f0c2b9e-1d7a-4c1e-9a63-0b1d2e3f4a5b";

async fn vtx_like(method: Option<&str>) -> (FakePbxReceiver, HttpPbx) {
    support::init_logging();
    let pbx = FakePbxReceiver::start().await;
    let template = format!(
        "{}/openapi/v1/users/{{extension}}/presence?status={{status}}",
        pbx.url
    );
    let headers = format!("X-C5-Application: {APP_GUID}; X-Extra: 1");
    let mut pairs = vec![
        ("PBX_HTTP_SET_URL", template.as_str()),
        ("PBX_HTTP_HEADERS", headers.as_str()),
        ("PBX_HTTP_USERNAME", "openapi@42.bus.ent"),
        ("PBX_HTTP_PASSWORD", "pa:ss word"),
    ];
    if let Some(m) = method {
        pairs.push(("PBX_HTTP_SET_METHOD", m));
    }
    let lookup = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let mut config = HttpPbxConfig::from_lookup(lookup).unwrap().unwrap();
    config.retry_base = Duration::from_millis(20);
    config.timeout = Duration::from_millis(500);
    (pbx, HttpPbx::new(config))
}

fn ext() -> Extension {
    Extension("101".into())
}

#[tokio::test]
async fn pbx_http_sends_one_request_with_url_body_basic_auth_and_extra_headers() {
    let (pbx, client) = vtx_like(None).await;
    client
        .set_profile(&ext(), &Profile::new("Out of office"))
        .await
        .unwrap();
    let got = pbx.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.path_and_query,
        "/openapi/v1/users/101/presence?status=Out%20of%20office"
    );
    assert_eq!(
        r.body,
        json!({"extension": "101", "status": "Out of office"})
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-c5-application"], APP_GUID);
    assert_eq!(r.headers["x-extra"], "1");
    let basic = base64::engine::general_purpose::STANDARD.encode("openapi@42.bus.ent:pa:ss word");
    assert_eq!(
        r.headers["authorization"],
        format!("Basic {basic}").as_str()
    );
}

#[tokio::test]
async fn pbx_http_uses_the_configured_method() {
    let (pbx, client) = vtx_like(Some("post")).await;
    client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap();
    assert_eq!(pbx.received()[0].method, "POST");
}

#[tokio::test]
async fn pbx_http_retries_once_after_a_500_then_succeeds() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([Answer::Status(500), Answer::Status(204)]);
    client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap();
    let got = pbx.received();
    assert_eq!(got.len(), 2, "one retry");
    assert_eq!(got[0].body, got[1].body);
    // Equal jitter: the first retry waits between half the 20 ms step and all of it.
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(10),
        "backoff"
    );
}

#[tokio::test]
async fn pbx_http_does_not_retry_a_400_and_names_the_status() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([Answer::Status(400)]);
    let e = client
        .set_profile(&ext(), &Profile::new("Nonsense"))
        .await
        .unwrap_err();
    assert_eq!(e, HttpPbxError::Rejected { status: 400 });
    assert!(e.to_string().contains("400"));
    assert_eq!(pbx.received().len(), 1, "no retry");
}

#[tokio::test]
async fn pbx_http_gives_up_after_three_tries_with_exponential_backoff() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([
        Answer::Status(503),
        Answer::Status(502),
        Answer::Status(500),
    ]);
    let e = client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, HttpPbxError::Unavailable { attempts: 3, .. }),
        "{e:?}"
    );
    let got = pbx.received();
    assert_eq!(got.len(), 3);
    // The second step is 40 ms; with equal jitter the wait is at least half of it.
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(20),
        "doubled"
    );
    let text = e.to_string();
    assert!(
        !text.contains("pa:ss") && !text.contains(APP_GUID),
        "{text}"
    );
}

#[tokio::test]
async fn pbx_http_honours_retry_after_on_429() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([Answer::RetryAfter(1)]);
    client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap();
    let got = pbx.received();
    assert_eq!(got.len(), 2);
    assert!(
        got[1].at - got[0].at >= Duration::from_secs(1),
        "waited Retry-After"
    );
}

#[tokio::test]
async fn pbx_http_hands_a_long_retry_after_back_to_the_caller() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([Answer::RetryAfter(3600)]);
    let e = client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        HttpPbxError::Throttled {
            retry_after: Duration::from_secs(3600)
        }
    );
    assert_eq!(pbx.received().len(), 1);
}

#[tokio::test]
async fn pbx_http_retries_a_timeout() {
    let (pbx, client) = vtx_like(None).await;
    pbx.script([Answer::Slow(Duration::from_secs(2))]);
    client
        .set_profile(&ext(), &Profile::new("Away"))
        .await
        .unwrap();
    assert_eq!(pbx.received().len(), 2);
}
