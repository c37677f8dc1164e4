//! The Azure Functions custom-handler invocation envelope: the only module that knows it.
//!
//! In payload mode the host POSTs `{"Data": {...}, "Metadata": {...}}` to `/{FunctionName}`
//! and expects `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}` back. Its quirks
//! (read from the azure-functions-host source: its `ScriptInvocationContextExtensions` and
//! `HttpScriptInvocationResultExtensions`):
//!
//! * scalar values (strings, numbers, bools) are run through `JsonConvert.SerializeObject`, so
//!   a string arrives JSON-encoded a second time (`"\"text/plain\""`) and a number as a string
//!   (`"11"`): [`unwrap_scalar`] undoes that, once;
//! * the HTTP request's `Query` is an object, or in older hosts a JSON string of one;
//!   `Headers` values are arrays of strings;
//! * `Body` is the raw text, base64 for binary content types, and some hosts hand JSON bodies
//!   over already parsed;
//! * every *string* output value that happens to be valid base64 is base64-decoded by the
//!   host before it reaches a non-HTTP binding, so messages are always sent as JSON objects;
//! * a non-2xx answer from the handler fails the invocation and writes no output at all.
//!
//! Handlers never see any of this: they get [`HttpTriggerRequest`], [`TimerInfo`] and
//! [`ServiceBusTrigger`], and build an [`InvocationResponse`].

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

/// Largest invocation body the handler accepts (the host's own limit for HTTP bodies is
/// 100 MB; nothing we receive legitimately comes near 4 MiB).
pub const MAX_INVOCATION_BYTES: usize = 4 * 1024 * 1024;

/// Why an invocation cannot be understood. Answered with 400 (the host logs it as a failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not a JSON object with `Data`/`Metadata`.
    #[error("invocation body is not a valid envelope: {0}")]
    Malformed(String),
    /// A binding the function.json promises is absent.
    #[error("invocation has no input binding named {0:?}")]
    MissingBinding(String),
    /// A binding is present but of the wrong shape.
    #[error("input binding {binding:?} is not a valid {expected}")]
    WrongShape {
        /// The binding name.
        binding: String,
        /// What it should have been.
        expected: &'static str,
    },
}

/// A payload-mode invocation, parsed.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    data: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl Invocation {
    /// Parses the body the host POSTs to `/{FunctionName}`.
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            // serde's message names line and column, never the content.
            EnvelopeError::Malformed(e.to_string())
        })?;
        let Value::Object(mut obj) = value else {
            return Err(EnvelopeError::Malformed("not a JSON object".into()));
        };
        let mut take = |k: &str| match obj.remove(k) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            // Tolerate a map that was itself double-encoded.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(EnvelopeError::Malformed(format!("{k} is not an object"))),
            },
            Some(_) => Err(EnvelopeError::Malformed(format!("{k} is not an object"))),
        };
        Ok(Self {
            data: take("Data")?,
            metadata: take("Metadata")?,
        })
    }

    /// A metadata value with the host's extra encoding removed.
    pub fn metadata(&self, key: &str) -> Option<Value> {
        lookup(&self.metadata, key).map(unwrap_scalar)
    }

    /// A metadata value as a string (numbers and bools rendered), if present.
    pub fn metadata_str(&self, key: &str) -> Option<String> {
        match self.metadata(key)? {
            Value::String(s) => Some(s),
            Value::Null => None,
            v => Some(v.to_string()),
        }
    }

    /// A metadata object (e.g. `Query`) as a string map, each value unwrapped.
    pub fn metadata_map(&self, key: &str) -> BTreeMap<String, String> {
        string_map(self.metadata(key))
    }

    /// The `sys.MethodName`/`InvocationId` style id, when the host sent one.
    pub fn invocation_id(&self) -> Option<String> {
        self.metadata("sys")
            .and_then(|s| s.get("InvocationId").map(unwrap_scalar))
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The HTTP trigger input named `binding` (`req` in our function.json files). Takes the
    /// invocation apart: the body and the maps are moved out, not copied.
    pub fn into_http_request(mut self, binding: &str) -> Result<HttpTriggerRequest, EnvelopeError> {
        let raw = take(&mut self.data, binding)
            .ok_or_else(|| EnvelopeError::MissingBinding(binding.into()))?;
        let shape = || EnvelopeError::WrongShape {
            binding: binding.into(),
            expected: "HTTP request",
        };
        let mut obj = match unwrap_owned(raw) {
            Value::Object(o) => o,
            _ => return Err(shape()),
        };
        let mut get = |k: &str| take(&mut obj, k).map(unwrap_owned);
        let method = get("Method")
            .and_then(|v| v.as_str().map(str::to_ascii_uppercase))
            .unwrap_or_else(|| "GET".into());
        let url = match get("Url") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let headers = headers_of(get("Headers"));
        let query = string_map(get("Query"));
        let params = string_map(get("Params"));
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        // The body is the text as sent: never unwrapped, even when it is JSON.
        let body = match take(&mut obj, "Body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if is_binary_content_type(&content_type) => {
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|_| shape())?
            }
            Some(Value::String(s)) => s.into_bytes(),
            // Some hosts parse JSON bodies; hand the JSON text back.
            Some(v) => v.to_string().into_bytes(),
        };
        Ok(HttpTriggerRequest {
            method,
            url,
            query,
            headers,
            params,
            body,
        })
    }

    /// The timer trigger input named `binding`.
    pub fn timer(&self, binding: &str) -> Result<TimerInfo, EnvelopeError> {
        let raw = lookup(&self.data, binding)
            .ok_or_else(|| EnvelopeError::MissingBinding(binding.into()))?;
        match unwrap_scalar(raw) {
            Value::Object(o) => Ok(TimerInfo {
                is_past_due: lookup(&o, "IsPastDue")
                    .map(unwrap_scalar)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
            }),
            // Tolerate an empty payload: a timer has nothing we depend on.
            Value::Null => Ok(TimerInfo::default()),
            _ => Err(EnvelopeError::WrongShape {
                binding: binding.into(),
                expected: "timer payload",
            }),
        }
    }

    /// The Service Bus trigger input named `binding` with the message metadata.
    pub fn service_bus(&self, binding: &str) -> Result<ServiceBusTrigger, EnvelopeError> {
        let raw = lookup(&self.data, binding)
            .ok_or_else(|| EnvelopeError::MissingBinding(binding.into()))?;
        // With `"dataType": "binary"` (our function.json) the body is base64; without it a
        // JSON body may arrive as an object or as a (double-encoded) string.
        let body = match raw {
            Value::String(s) => {
                match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                    Ok(bytes) => bytes,
                    Err(_) => match unwrap_scalar(raw) {
                        Value::String(inner) => inner.into_bytes(),
                        other => other.to_string().into_bytes(),
                    },
                }
            }
            other => other.to_string().into_bytes(),
        };
        Ok(ServiceBusTrigger {
            body,
            message_id: self.metadata_str("MessageId"),
            delivery_count: self
                .metadata_str("DeliveryCount")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            sequence_number: self
                .metadata_str("SequenceNumber")
                .and_then(|s| s.parse().ok()),
        })
    }
}

/// Case-insensitive key lookup (Newtonsoft on the host side is case-insensitive too).
fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// [`lookup`], removing the value from the map.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    if let Some(v) = map.remove(key) {
        return Some(v);
    }
    let found = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    map.remove(&found)
}

/// Undoes the host's second JSON encoding of scalars, once: `"\"abc\""` becomes `"abc"`,
/// `"11"` stays the string `"11"` (callers parse numbers themselves), and a string holding a
/// JSON object or array becomes that value. Anything else is returned unchanged.
pub fn unwrap_scalar(v: &Value) -> Value {
    reencoded(v).unwrap_or_else(|| v.clone())
}

/// [`unwrap_scalar`] of a value the caller gives up.
fn unwrap_owned(v: Value) -> Value {
    reencoded(&v).unwrap_or(v)
}

/// The value a string holds when it is JSON text of a string, object or array.
fn reencoded(v: &Value) -> Option<Value> {
    let Value::String(s) = v else { return None };
    let t = s.trim_start();
    if t.starts_with('"') || t.starts_with('{') || t.starts_with('[') {
        serde_json::from_str::<Value>(s).ok()
    } else {
        None
    }
}

fn string_map(v: Option<Value>) -> BTreeMap<String, String> {
    let obj = match v {
        Some(Value::Object(o)) => o,
        _ => return BTreeMap::new(),
    };
    obj.into_iter()
        .filter_map(|(k, v)| match unwrap_owned(v) {
            Value::String(s) => Some((k, s)),
            Value::Null => None,
            other => Some((k, other.to_string())),
        })
        .collect()
}

fn headers_of(v: Option<Value>) -> Vec<(String, String)> {
    let obj = match v {
        Some(Value::Object(o)) => o,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for (k, v) in obj {
        let name = k.to_ascii_lowercase();
        match v {
            Value::Array(items) => {
                for item in items {
                    if let Value::String(s) = unwrap_owned(item) {
                        out.push((name.clone(), s));
                    }
                }
            }
            other => {
                if let Value::String(s) = unwrap_owned(other) {
                    out.push((name, s));
                }
            }
        }
    }
    out
}

fn is_binary_content_type(ct: &str) -> bool {
    ct.starts_with("application/octet-stream") || ct.starts_with("multipart/")
}

/// An HTTP request as the host describes it in `Data.req`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpTriggerRequest {
    /// Upper-case method.
    pub method: String,
    /// The original URL (`https://host/api/notifications?validationToken=...`).
    pub url: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers, names lower-cased, one entry per value.
    pub headers: Vec<(String, String)>,
    /// Route parameters.
    pub params: BTreeMap<String, String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpTriggerRequest {
    /// The path and query to dispatch to our router: always `path` (the invoked function's
    /// own route: the URL in the envelope is request data and must not pick another route),
    /// with the URL's query as sent (percent-encoding intact), or the `Query` map when the
    /// host sent no usable URL.
    pub fn path_and_query(&self, path: &str) -> String {
        let mut s = path.to_owned();
        if let Ok(u) = url::Url::parse(&self.url) {
            if let Some(q) = u.query() {
                s.push('?');
                s.push_str(q);
            }
            return s;
        }
        if !self.query.is_empty() {
            s.push('?');
            s.push_str(&serde_urlencoded::to_string(&self.query).unwrap_or_default());
        }
        s
    }
}

/// The timer trigger's payload (we only care whether the run is late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerInfo {
    /// The host started this run later than scheduled.
    pub is_past_due: bool,
}

/// A Service Bus message delivered by the trigger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceBusTrigger {
    /// The message body.
    pub body: Vec<u8>,
    /// `MessageId` metadata.
    pub message_id: Option<String>,
    /// `DeliveryCount` metadata (1 on first delivery).
    pub delivery_count: u32,
    /// `SequenceNumber` metadata.
    pub sequence_number: Option<i64>,
}

/// The HTTP output binding value (`res`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpOutput {
    /// Status code, as a string the way the host's own samples write it.
    #[serde(rename = "statusCode")]
    pub status_code: String,
    /// Header map.
    pub headers: BTreeMap<String, String>,
    /// Body text.
    pub body: String,
}

/// What the handler answers to one invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationResponse {
    outputs: Map<String, Value>,
    logs: Vec<String>,
    return_value: Option<Value>,
}

impl InvocationResponse {
    /// Sets the HTTP output binding.
    pub fn with_http(mut self, binding: &str, res: HttpOutput) -> Self {
        self.outputs.insert(
            binding.into(),
            serde_json::to_value(res).expect("HttpOutput serializes"),
        );
        self
    }

    /// Sets a message output binding. Each message must be a JSON object: the host would
    /// base64-decode a string that looks like base64 and send garbage. An empty list writes
    /// no message (the binding is left out rather than set to `[]`).
    pub fn with_messages(mut self, binding: &str, messages: Vec<Value>) -> Self {
        debug_assert!(messages.iter().all(Value::is_object));
        match messages.len() {
            0 => {}
            1 => {
                self.outputs
                    .insert(binding.into(), messages.into_iter().next().expect("one"));
            }
            _ => {
                self.outputs.insert(binding.into(), Value::Array(messages));
            }
        }
        self
    }

    /// Adds a line to the invocation's log (shown in the host's output). Must not contain
    /// secrets: callers pass fixed text and ids only.
    pub fn log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    /// Sets `ReturnValue` (for a `$return` binding).
    pub fn with_return_value(mut self, v: Value) -> Self {
        self.return_value = Some(v);
        self
    }

    /// The output bindings written so far.
    pub fn outputs(&self) -> &Map<String, Value> {
        &self.outputs
    }
}

/// `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`, the body the host reads.
impl Serialize for InvocationResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("InvocationResponse", 3)?;
        out.serialize_field("Outputs", &self.outputs)?;
        out.serialize_field("Logs", &self.logs)?;
        out.serialize_field("ReturnValue", &self.return_value)?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_lose_exactly_one_layer_of_encoding() {
        assert_eq!(unwrap_scalar(&json!("\"text/plain\"")), json!("text/plain"));
        assert_eq!(unwrap_scalar(&json!("\"\\\"x\\\"\"")), json!("\"x\""));
        assert_eq!(unwrap_scalar(&json!("11")), json!("11"));
        assert_eq!(unwrap_scalar(&json!("plain")), json!("plain"));
        assert_eq!(unwrap_scalar(&json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(unwrap_scalar(&json!("{not json")), json!("{not json"));
        assert_eq!(unwrap_scalar(&json!(5)), json!(5));
    }

    #[test]
    fn http_request_with_every_quirk() {
        let body = json!({
            "Data": {"req": {
                "Url": "https://app.example/api/notifications?validationToken=a%2Bb%20c",
                "Method": "POST",
                "Query": "{\"validationToken\":\"a+b c\"}",
                "Headers": {"Content-Type": ["text/plain; charset=utf-8"], "X-Two": ["1", "2"]},
                "Params": {},
                "Body": "hello"
            }},
            "Metadata": {"Query": {"validationToken": "\"a+b c\""}, "sys": {"MethodName": "\"notifications\"", "InvocationId": "\"abc-123\""}}
        });
        let inv = Invocation::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(inv.invocation_id().as_deref(), Some("abc-123"));
        assert_eq!(inv.metadata_map("Query")["validationToken"], "a+b c");
        let req = inv.into_http_request("req").unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.query["validationToken"], "a+b c");
        assert_eq!(req.headers.iter().filter(|(k, _)| k == "x-two").count(), 2);
        assert_eq!(req.body, b"hello");
        assert_eq!(
            req.path_and_query("/api/notifications"),
            "/api/notifications?validationToken=a%2Bb%20c"
        );
        // The URL's path never picks the route.
        assert_eq!(
            req.path_and_query("/api/health"),
            "/api/health?validationToken=a%2Bb%20c"
        );
    }

    #[test]
    fn binary_and_parsed_bodies() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]);
        let body = json!({"Data": {"req": {"Method": "post", "Headers": {"content-type": ["application/octet-stream"]}, "Body": b64}}});
        let req = Invocation::parse(body.to_string().as_bytes())
            .unwrap()
            .into_http_request("req")
            .unwrap();
        assert_eq!(req.body, vec![0, 1, 2, 255]);
        let body = json!({"Data": {"req": {"Method": "POST", "Body": {"value": []}}}});
        let req = Invocation::parse(body.to_string().as_bytes())
            .unwrap()
            .into_http_request("req")
            .unwrap();
        assert_eq!(req.body, br#"{"value":[]}"#);
    }

    #[test]
    fn service_bus_body_and_metadata() {
        let msg = br#"{"type":"presence.changed"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(msg);
        let body = json!({"Data": {"msg": b64}, "Metadata": {"DeliveryCount": "3", "MessageId": "\"m-1\"", "SequenceNumber": "42"}});
        let t = Invocation::parse(body.to_string().as_bytes())
            .unwrap()
            .service_bus("msg")
            .unwrap();
        assert_eq!(t.body, msg);
        assert_eq!(t.delivery_count, 3);
        assert_eq!(t.message_id.as_deref(), Some("m-1"));
        assert_eq!(t.sequence_number, Some(42));
        // Without dataType binary: a double-encoded JSON string.
        let body =
            json!({"Data": {"msg": serde_json::to_string(&String::from_utf8_lossy(msg)).unwrap()}});
        let t = Invocation::parse(body.to_string().as_bytes())
            .unwrap()
            .service_bus("msg")
            .unwrap();
        assert_eq!(t.body, msg);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"Data\": 5}",
            b"\xff\xfe",
            b"{\"Data\":{\"req\":7}}",
        ] {
            match Invocation::parse(bad) {
                Err(_) => {}
                Ok(inv) => assert!(inv.into_http_request("req").is_err()),
            }
        }
        let inv = Invocation::parse(b"{}").unwrap();
        assert_eq!(
            inv.into_http_request("req").unwrap_err(),
            EnvelopeError::MissingBinding("req".into())
        );
    }

    #[test]
    fn messages_are_objects_and_empty_lists_write_nothing() {
        let r = InvocationResponse::default().with_messages("message", vec![]);
        assert!(r.outputs().is_empty());
        let r = InvocationResponse::default()
            .with_messages("message", vec![json!({"a": 1}), json!({"b": 2})])
            .with_http(
                "res",
                HttpOutput {
                    status_code: "202".into(),
                    headers: BTreeMap::new(),
                    body: String::new(),
                },
            )
            .log("done");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["Outputs"]["message"], json!([{"a": 1}, {"b": 2}]));
        assert_eq!(v["Outputs"]["res"]["statusCode"], "202");
        assert_eq!(v["Logs"], json!(["done"]));
    }
}
