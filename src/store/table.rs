//! Azure Table Storage over its REST API (no maintained crate exists for azure_core 1.x).
//!
//! The parts that bite (from Microsoft's Table service REST reference and Azurite's behaviour):
//!
//! * Shared Key signing: `VERB\nContent-MD5\nContent-Type\nDate\nCanonicalizedResource`, HMAC
//!   with the *base64-decoded* account key; the canonicalized resource is `/{account}` plus
//!   the URL path as sent, so with Azurite's path-style URLs the account name appears twice
//!   (`/devstoreaccount1/devstoreaccount1/Table(...)`). Getting that wrong is an opaque 403.
//! * `PUT`/`DELETE` with `If-Match` are conditional (412 when the ETag moved); `PUT` without it
//!   is insert-or-replace.
//! * Queries page with `x-ms-continuation-NextPartitionKey`/`NextRowKey`.
//! * Keys go into the URL: single quotes doubled, then percent-encoded.
//!
//! Each entity is stored as `PartitionKey`, `RowKey` and one `Data` property holding the JSON
//! document (well under the 64 KiB property limit for our records).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{header, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::Sha256;
use url::Url;

use super::{Entity, Etag, StoreError, Table};
use crate::config::{ConfigError, TablesConnection};
use crate::core::backoff::Backoff;

const API_VERSION: &str = "2019-02-02";
/// Tries per request: the first and three retries on a transient failure.
const ATTEMPTS: u32 = 4;
/// The first retry's delay; ×4 per retry (200 ms, 800 ms, 3.2 s), with jitter.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_CAP: Duration = Duration::from_millis(3200);
/// Azurite's well-known development account (public, documented in the Azurite README).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Characters left as they are in a key inside `(PartitionKey='…')`.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How requests are authorised.
#[derive(Clone)]
enum Auth {
    SharedKey { account: String, key: Arc<Vec<u8>> },
    Bearer(crate::store::azure_auth::TokenSource),
}

/// A Table Storage client bound to one account. Cheap to clone.
#[derive(Clone)]
pub struct TableStore {
    http: reqwest::Client,
    /// Ends with `/`: `https://acct.table.core.windows.net/` or
    /// `http://127.0.0.1:10002/devstoreaccount1/`.
    endpoint: Url,
    auth: Auth,
    /// What this process last read or wrote, by entity: see [`TableStore::known`].
    known: Arc<std::sync::Mutex<Known>>,
    /// Whether [`TableStore::scan_where`] knows the whole table was read once already.
    swept: Arc<std::sync::atomic::AtomicBool>,
}

/// Entities this process last read or wrote, with their ETags: (table, pk, rk) → (ETag,
/// document). Emptied when full: it holds what is in use.
type Known = std::collections::HashMap<(Table, String, String), (Etag, Value)>;

/// At most this many entities are kept in [`TableStore::known`] (a presence record is
/// about 1 KB: a few MB at most).
const KNOWN_MAX: usize = 4_096;

impl TableStore {
    /// Builds a client from the configured connection.
    pub fn from_config(conn: &TablesConnection) -> Result<Self, ConfigError> {
        match conn {
            TablesConnection::ConnectionString(cs) => Self::from_connection_string(cs),
            TablesConnection::Identity {
                endpoint,
                client_id,
            } => {
                let source =
                    crate::store::azure_auth::TokenSource::managed_identity(client_id.as_deref())
                        .map_err(|problem| ConfigError {
                        setting: "AzureWebJobsStorage__accountName".into(),
                        problem,
                    })?;
                Ok(Self::with_auth(endpoint.clone(), Auth::Bearer(source)))
            }
        }
    }

    /// Parses a storage connection string (`UseDevelopmentStorage=true`, account key, or an
    /// explicit `TableEndpoint`).
    pub fn from_connection_string(cs: &SecretString) -> Result<Self, ConfigError> {
        let setting = "TABLES_CONNECTION_STRING/AzureWebJobsStorage";
        let bad = |problem: &str| ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        };
        let mut parts = std::collections::HashMap::new();
        for part in cs.expose_secret().split(';') {
            if let Some((k, v)) = part.split_once('=') {
                parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let dev = parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let (account, key) = if dev {
            (DEV_ACCOUNT.to_owned(), DEV_KEY.to_owned())
        } else {
            if parts.contains_key("sharedaccesssignature") {
                return Err(bad("SAS connection strings are not supported; use an account key or the managed identity (AzureWebJobsStorage__accountName)"));
            }
            let account = parts
                .get("accountname")
                .cloned()
                .ok_or_else(|| bad("has no AccountName; expected a storage connection string"))?;
            let key = parts
                .get("accountkey")
                .cloned()
                .ok_or_else(|| bad("has no AccountKey; expected a storage connection string"))?;
            (account, key)
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .map_err(|_| bad("has an AccountKey that is not base64"))?;
        let endpoint = if let Some(te) = parts.get("tableendpoint") {
            te.clone()
        } else if dev {
            let host = parts
                .get("developmentstorageproxyuri")
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1".into());
            format!("{}:10002/{DEV_ACCOUNT}", host.trim_end_matches('/'))
        } else {
            let proto = parts
                .get("defaultendpointsprotocol")
                .cloned()
                .unwrap_or_else(|| "https".into());
            let suffix = parts
                .get("endpointsuffix")
                .cloned()
                .unwrap_or_else(|| "core.windows.net".into());
            format!("{proto}://{account}.table.{suffix}")
        };
        let endpoint = Url::parse(&format!("{}/", endpoint.trim_end_matches('/')))
            .map_err(|_| bad("has a TableEndpoint that is not a URL"))?;
        Ok(Self::with_auth(
            endpoint,
            Auth::SharedKey {
                account,
                key: Arc::new(key),
            },
        ))
    }

    fn with_auth(endpoint: Url, auth: Auth) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("TLS backend initialises");
        Self {
            http,
            endpoint,
            auth,
            known: Default::default(),
            swept: Default::default(),
        }
    }

    /// The entity as this process last read or wrote it, and its ETag then: what a
    /// read-decide-write loop may decide on *when it writes*, conditional on that ETag, to
    /// save the read (a change's write followed by the write that clears its pending mark
    /// costs two round trips instead of four). Another writer since only makes that write
    /// fail with 412, and the loop reads again. It is no proof that nothing changed:
    /// deciding to leave an entity alone takes a fresh read.
    pub fn known(&self, t: Table, pk: &str, rk: &str) -> Option<(Etag, Value)> {
        self.known_entities()
            .get(&(t, pk.to_owned(), rk.to_owned()))
            .cloned()
    }

    fn known_entities(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, t: Table, pk: &str, rk: &str, seen: Option<(&Etag, &Value)>) {
        let mut known = self.known_entities();
        let key = (t, pk.to_owned(), rk.to_owned());
        match seen {
            Some((etag, data)) => {
                if known.len() >= KNOWN_MAX {
                    known.clear();
                }
                known.insert(key, (etag.clone(), data.clone()));
            }
            None => {
                known.remove(&key);
            }
        }
    }

    /// The table endpoint (no credentials in it).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    fn entity_url(&self, t: Table, pk: &str, rk: &str) -> Url {
        let enc =
            |k: &str| utf8_percent_encode(&encode_key(k).replace('\'', "''"), KEY_SET).to_string();
        self.endpoint
            .join(&format!(
                "{}(PartitionKey='{}',RowKey='{}')",
                t.name(),
                enc(pk),
                enc(rk)
            ))
            .expect("entity path joins")
    }

    /// Sends one request with auth headers, retrying transient failures (connection errors,
    /// timeouts, 408, 429, 500, 502, 503, 504) up to three times with backoff.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> Result<reqwest::Response, StoreError> {
        Ok(self.send_tracked(method, url, body, extra).await?.0)
    }

    /// [`Self::send`], also telling whether an earlier attempt may have been carried out
    /// (it reached the service but its answer was lost or was a 5xx). A write's retry that
    /// then meets 409/412/404 may be meeting its own first attempt.
    async fn send_tracked(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: &[(&str, String)],
    ) -> Result<(reqwest::Response, bool), StoreError> {
        let body_text = body.map(Value::to_string);
        let mut attempt = 0u32;
        let mut maybe_done = false;
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP).with_factor(4);
        loop {
            attempt += 1;
            let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            let content_type = if body_text.is_some() {
                "application/json"
            } else {
                ""
            };
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("x-ms-date", &date)
                .header("x-ms-version", API_VERSION)
                .header(header::ACCEPT, "application/json;odata=minimalmetadata")
                .header("DataServiceVersion", "3.0;NetFx")
                .header("MaxDataServiceVersion", "3.0;NetFx");
            for (k, v) in extra {
                req = req.header(*k, v);
            }
            if let Some(b) = &body_text {
                req = req
                    .header(header::CONTENT_TYPE, content_type)
                    .body(b.clone());
            }
            req = match &self.auth {
                Auth::SharedKey { account, key } => {
                    let sig =
                        sign_shared_key(account, key, method.as_str(), content_type, &date, &url);
                    req.header(header::AUTHORIZATION, format!("SharedKey {account}:{sig}"))
                }
                Auth::Bearer(src) => {
                    let token = src
                        .token("https://storage.azure.com/.default")
                        .await
                        .map_err(StoreError::Unavailable)?;
                    req.header(
                        header::AUTHORIZATION,
                        format!("Bearer {}", token.expose_secret()),
                    )
                }
            };
            let outcome = req.send().await;
            let transient = match &outcome {
                Ok(r) => matches!(
                    r.status(),
                    StatusCode::REQUEST_TIMEOUT
                        | StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::INTERNAL_SERVER_ERROR
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            if !transient || attempt >= ATTEMPTS {
                return match outcome {
                    Ok(r) => Ok((r, maybe_done)),
                    // reqwest's error text holds the URL (no credentials: auth is a header).
                    Err(e) => Err(StoreError::Unavailable(format!(
                        "table storage unreachable: {}",
                        e.without_url()
                    ))),
                };
            }
            // A refused connection carried nothing; anything else may have been applied.
            maybe_done |= !matches!(&outcome, Err(e) if e.is_connect());
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// After a retried write met 409/412/404: whether the row holds exactly `data`, i.e. the
    /// lost first attempt committed. Returns its ETag then.
    async fn already_written(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Option<Etag>, StoreError> {
        Ok(self
            .get(t, pk, rk)
            .await?
            .filter(|e| &e.data == data)
            .map(|e| e.etag))
    }

    /// Creates every table that does not exist yet.
    pub async fn ensure_tables(&self) -> Result<(), StoreError> {
        for t in Table::ALL {
            let url = self.endpoint.join("Tables").expect("joins");
            let r = self
                .send(
                    Method::POST,
                    url,
                    Some(&json!({ "TableName": t.name() })),
                    &[("Prefer", "return-no-content".into())],
                )
                .await?;
            match r.status() {
                s if s.is_success() => {}
                StatusCode::CONFLICT => {}
                _ => return Err(failure("create table", r).await),
            }
        }
        Ok(())
    }

    /// Reads one entity.
    pub async fn get(&self, t: Table, pk: &str, rk: &str) -> Result<Option<Entity>, StoreError> {
        let r = self
            .send(Method::GET, self.entity_url(t, pk, rk), None, &[])
            .await?;
        match r.status() {
            StatusCode::OK => {
                let etag = etag_of(&r)?;
                let v: Value = r
                    .json()
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("bad table response: {e}")))?;
                let e = entity_of(&v, Some(etag))?;
                self.remember(t, pk, rk, Some((&e.etag, &e.data)));
                Ok(Some(e))
            }
            StatusCode::NOT_FOUND => {
                self.remember(t, pk, rk, None);
                Ok(None)
            }
            _ => Err(failure("read", r).await),
        }
    }

    /// Inserts; Conflict if present.
    pub async fn insert(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        let url = self.endpoint.join(t.name()).expect("joins");
        let body = entity_body(t, pk, rk, data);
        let (r, maybe_done) = self
            .send_tracked(
                Method::POST,
                url,
                Some(&body),
                &[("Prefer", "return-no-content".into())],
            )
            .await?;
        let written = match r.status() {
            s if s.is_success() => etag_of(&r),
            StatusCode::CONFLICT if maybe_done => self
                .already_written(t, pk, rk, data)
                .await?
                .ok_or(StoreError::Conflict),
            StatusCode::CONFLICT => Err(StoreError::Conflict),
            _ => Err(failure("insert", r).await),
        };
        self.after_write(t, pk, rk, data, &written);
        written
    }

    /// Keeps what a write left: the document and its new ETag, or nothing when the write
    /// lost a race (the entity is not what this process knew).
    fn after_write(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
        written: &Result<Etag, StoreError>,
    ) {
        match written {
            Ok(etag) => self.remember(t, pk, rk, Some((etag, data))),
            Err(_) => self.remember(t, pk, rk, None),
        }
    }

    /// Replaces when the ETag matches.
    pub async fn replace(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        self.put(t, pk, rk, data, Some(etag)).await
    }

    /// Inserts or replaces.
    pub async fn upsert(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
    ) -> Result<Etag, StoreError> {
        self.put(t, pk, rk, data, None).await
    }

    async fn put(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        data: &Value,
        etag: Option<&Etag>,
    ) -> Result<Etag, StoreError> {
        let body = entity_body(t, pk, rk, data);
        let extra: Vec<(&str, String)> = etag
            .map(|e| ("If-Match", e.0.clone()))
            .into_iter()
            .collect();
        let (r, maybe_done) = self
            .send_tracked(Method::PUT, self.entity_url(t, pk, rk), Some(&body), &extra)
            .await?;
        let written = match r.status() {
            s if s.is_success() => etag_of(&r),
            StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND
                if maybe_done && etag.is_some() =>
            {
                match self.already_written(t, pk, rk, data).await? {
                    Some(e) => Ok(e),
                    None if r.status() == StatusCode::NOT_FOUND => Err(StoreError::NotFound),
                    None => Err(StoreError::PreconditionFailed),
                }
            }
            StatusCode::PRECONDITION_FAILED => Err(StoreError::PreconditionFailed),
            StatusCode::NOT_FOUND if etag.is_some() => Err(StoreError::NotFound),
            _ => Err(failure("write", r).await),
        };
        self.after_write(t, pk, rk, data, &written);
        written
    }

    /// Deletes, conditionally when an ETag is given.
    pub async fn delete(
        &self,
        t: Table,
        pk: &str,
        rk: &str,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        let if_match = etag.map(|e| e.0.clone()).unwrap_or_else(|| "*".into());
        let (r, maybe_done) = self
            .send_tracked(
                Method::DELETE,
                self.entity_url(t, pk, rk),
                None,
                &[("If-Match", if_match)],
            )
            .await?;
        self.remember(t, pk, rk, None);
        match r.status() {
            s if s.is_success() => Ok(()),
            // The lost first attempt deleted it.
            StatusCode::NOT_FOUND if maybe_done => Ok(()),
            StatusCode::PRECONDITION_FAILED => Err(StoreError::PreconditionFailed),
            StatusCode::NOT_FOUND => Err(StoreError::NotFound),
            _ => Err(failure("delete", r).await),
        }
    }

    /// Every entity of a table or partition, following continuation tokens.
    pub async fn scan(&self, t: Table, pk: Option<&str>) -> Result<Vec<Entity>, StoreError> {
        let filter =
            pk.map(|pk| format!("PartitionKey eq '{}'", encode_key(pk).replace('\'', "''")));
        let mut out = Vec::new();
        self.query(t, filter.as_deref(), |item| {
            out.push(entity_of(item, None)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// The entities of a table whose index properties ([`Table::indexed`]) meet any of
    /// `any`, filtered by Table Storage itself: a re-send looks for the few pending rows
    /// among 100,000 without reading them all. Until a marker in the meta table says the
    /// table was read whole once, the query reads it whole and filters here (page by page),
    /// so rows written before the index properties existed are not missed after an upgrade.
    pub async fn scan_where(
        &self,
        t: Table,
        any: &[super::Bound],
    ) -> Result<Vec<Entity>, StoreError> {
        if !self.swept.load(std::sync::atomic::Ordering::Relaxed) {
            // Once per table and account, not per process: a marker says the whole table
            // was read since the index properties exist (rows a version before them left
            // pending are found by that one read; every write since sets them).
            if self.get(Table::Meta, "indexed", t.name()).await?.is_none() {
                let mut found = Vec::new();
                self.query(t, None, |item| {
                    let e = entity_of(item, None)?;
                    if super::meets(t, &e.data, any) {
                        found.push(e);
                    }
                    Ok(())
                })
                .await?;
                let at = index_time(&Utc::now());
                self.upsert(Table::Meta, "indexed", t.name(), &json!({ "at": at }))
                    .await?;
                self.swept.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(found);
            }
            self.swept.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let filter = any
            .iter()
            .map(|b| {
                let (name, op, at) = match b {
                    super::Bound::AtMost(n, at) => (n, "le", at),
                    super::Bound::AtLeast(n, at) => (n, "ge", at),
                };
                format!("({name} {op} '{}')", index_time(at))
            })
            .collect::<Vec<_>>()
            .join(" or ");
        if filter.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.query(t, Some(&filter), |item| {
            out.push(entity_of(item, None)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every row of a table as its partition key and its document read as `T` (rows that
    /// do not decode are left out), read as 16 key ranges at once (user ids are GUIDs, so
    /// their first hex digit spreads them evenly) and decoded page by page: 100,000
    /// presence rows are 100 pages, and one after the other they took seconds.
    pub async fn scan_as<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
    ) -> Result<Vec<(String, T)>, StoreError> {
        const BOUNDS: [&str; 15] = [
            "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
        ];
        let ranges = (0..=BOUNDS.len()).map(|i| {
            let lo = i
                .checked_sub(1)
                .map(|l| format!("PartitionKey ge '{}'", BOUNDS[l]));
            let hi = BOUNDS.get(i).map(|h| format!("PartitionKey lt '{h}'"));
            [lo, hi]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
        });
        let reads = ranges.map(|filter| async move {
            let mut rows = Vec::new();
            self.query(t, Some(&filter), |item| {
                let data = data_text(item);
                let pk = item.get("PartitionKey").and_then(Value::as_str);
                if let (Some(pk), Some(data)) = (pk, data) {
                    if let Ok(v) = serde_json::from_str::<T>(&data) {
                        rows.push((decode_key(pk), v));
                    }
                }
                Ok(())
            })
            .await
            .map(|()| rows)
        });
        Ok(futures_util::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Runs a query (`$filter` when given), page after page, handing each entity's JSON to
    /// `each` as it arrives: no page is kept once read.
    async fn query(
        &self,
        t: Table,
        filter: Option<&str>,
        mut each: impl FnMut(&Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut next: Option<(String, Option<String>)> = None;
        loop {
            let mut url = self
                .endpoint
                .join(&format!("{}()", t.name()))
                .expect("joins");
            {
                let mut q = url.query_pairs_mut();
                if let Some(f) = filter {
                    q.append_pair("$filter", f);
                }
                if let Some((npk, nrk)) = &next {
                    q.append_pair("NextPartitionKey", npk);
                    if let Some(nrk) = nrk {
                        q.append_pair("NextRowKey", nrk);
                    }
                }
            }
            if url.query() == Some("") {
                url.set_query(None);
            }
            let r = self.send(Method::GET, url, None, &[]).await?;
            if !r.status().is_success() {
                return Err(failure("query", r).await);
            }
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let cont_pk = header("x-ms-continuation-NextPartitionKey");
            let cont_rk = header("x-ms-continuation-NextRowKey");
            let v: Value = r
                .json()
                .await
                .map_err(|e| StoreError::Unavailable(format!("bad table response: {e}")))?;
            for item in v
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                each(item)?;
            }
            match cont_pk {
                Some(p) => next = Some((p, cont_rk)),
                None => break,
            }
        }
        Ok(())
    }
}

/// An index property's time as stored: RFC 3339, UTC, microseconds, so that comparing the
/// strings (what a `$filter` on a string property does) compares the times.
fn index_time(at: &chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Table Storage forbids `/ \ # ?` and control characters in keys: escape them (and `%`
/// itself) as `%XX`, reversibly, so any string can be a key.
fn encode_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    for c in k.chars() {
        match c {
            '%' | '/' | '\\' | '#' | '?' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn decode_key(k: &str) -> String {
    percent_encoding::percent_decode_str(k)
        .decode_utf8_lossy()
        .into_owned()
}

/// The Shared Key signature for the Table service (not Shared Key Lite).
fn sign_shared_key(
    account: &str,
    key: &[u8],
    verb: &str,
    content_type: &str,
    date: &str,
    url: &Url,
) -> String {
    let mut resource = format!("/{account}{}", url.path());
    // Only `comp` is part of the canonicalized resource for the Table service.
    if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k == "comp") {
        resource.push_str("?comp=");
        resource.push_str(&comp);
    }
    let string_to_sign = format!("{verb}\n\n{content_type}\n{date}\n{resource}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn etag_of(r: &reqwest::Response) -> Result<Etag, StoreError> {
    r.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|s| Etag(s.to_owned()))
        .ok_or_else(|| StoreError::Other("table response without ETag".into()))
}

fn entity_of(v: &Value, etag: Option<Etag>) -> Result<Entity, StoreError> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let pk = s("PartitionKey")
        .map(|k| decode_key(&k))
        .ok_or_else(|| StoreError::Other("entity without PartitionKey".into()))?;
    let rk = s("RowKey")
        .map(|k| decode_key(&k))
        .ok_or_else(|| StoreError::Other("entity without RowKey".into()))?;
    let etag = etag
        .or_else(|| s("odata.etag").map(Etag))
        .ok_or_else(|| StoreError::Other("entity without ETag".into()))?;
    let text =
        data_text(v).ok_or_else(|| StoreError::Other(format!("entity {pk}/{rk} has no Data")))?;
    let data = serde_json::from_str(&text)
        .map_err(|e| StoreError::Other(format!("entity {pk}/{rk}: {e}")))?;
    Ok(Entity { pk, rk, data, etag })
}

/// The document's JSON text: `Data`, and `Data1`, `Data2`, ... after it when it was split.
fn data_text(v: &Value) -> Option<String> {
    let mut text = v.get("Data").and_then(Value::as_str)?.to_owned();
    for n in 1.. {
        let Some(more) = v.get(format!("Data{n}")).and_then(Value::as_str) else {
            break;
        };
        text.push_str(more);
    }
    Some(text)
}

/// Table Storage refuses a string property over 64 KiB (32 Ki UTF-16 code units): a
/// tenant-mode subscription (650 user ids, and a resource naming them all) is about 52,000
/// characters of JSON. Longer documents are cut into `Data`, `Data1`, `Data2`, ... (up to
/// the 1 MiB an entity may hold); [`entity_of`] joins them again.
const PROPERTY_UNITS: usize = 32_000;

/// The entity for a write: the keys, the document in as many properties as it needs, and
/// the table's index properties ([`Table::indexed`]) copied out of it for queries.
fn entity_body(t: Table, pk: &str, rk: &str, data: &Value) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("PartitionKey".into(), Value::String(encode_key(pk)));
    body.insert("RowKey".into(), Value::String(encode_key(rk)));
    for (name, pointer) in t.indexed() {
        let at = data
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok());
        if let Some(at) = at {
            body.insert(
                (*name).into(),
                Value::String(index_time(&at.with_timezone(&Utc))),
            );
        }
    }
    for (n, part) in split_utf16(&data.to_string(), PROPERTY_UNITS)
        .into_iter()
        .enumerate()
    {
        let name = if n == 0 {
            "Data".to_owned()
        } else {
            format!("Data{n}")
        };
        body.insert(name, Value::String(part));
    }
    Value::Object(body)
}

/// `text` in pieces of at most `units` UTF-16 code units each, cut between characters.
fn split_utf16(text: &str, units: usize) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut used = 0;
    for c in text.chars() {
        if used + c.len_utf16() > units {
            parts.push(String::new());
            used = 0;
        }
        used += c.len_utf16();
        parts.last_mut().expect("one part at least").push(c);
    }
    parts
}

async fn failure(op: &str, r: reqwest::Response) -> StoreError {
    let status = r.status();
    // The error body is Table Storage's own JSON (code + message); it holds no secrets.
    let body = r.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/odata.error/code")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let msg = format!("table {op} failed: HTTP {status} {code}");
    if status.is_server_error() {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Other(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azurite_canonical_resource_repeats_the_account() {
        let store =
            TableStore::from_connection_string(&SecretString::from("UseDevelopmentStorage=true"))
                .unwrap();
        let url = store.entity_url(Table::Users, "a'b", "c d");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:10002/devstoreaccount1/TeamsPresenceUsers(PartitionKey='a%27%27b',RowKey='c%20d')"
        );
        // Known-answer test; the expected value was computed with the openssl CLI:
        // printf 'GET\n\n\nMon, 23 Nov 2026 01:00:00 GMT\n/devstoreaccount1/devstoreaccount1/T()' \
        //   | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo -n $KEY | base64 -d | xxd -p -c 256) -binary | base64
        let url = Url::parse("http://127.0.0.1:10002/devstoreaccount1/T()").unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(DEV_KEY)
            .unwrap();
        let sig = sign_shared_key(
            DEV_ACCOUNT,
            &key,
            "GET",
            "",
            "Mon, 23 Nov 2026 01:00:00 GMT",
            &url,
        );
        assert_eq!(sig, "8eAALIG9c9+6NI7uwdyR0vooY4GjFtCOa3KlCaYI7JM=");
    }

    /// Issue 32: a tenant-mode subscription record is larger than one property may hold.
    #[test]
    fn documents_longer_than_a_property_are_split_and_joined_again() {
        let ids: Vec<String> = (0..650)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect();
        let doc =
            json!({"userIds": ids, "resource": ids.join(","), "emoji": "\u{1F600}".repeat(20_000)});
        let body = entity_body(Table::Meta, "pk", "rk", &doc);
        let props: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert!(props.len() > 3, "{props:?}");
        for (k, v) in body.as_object().unwrap() {
            let units = v.as_str().unwrap().encode_utf16().count();
            assert!(units <= 32_768, "{k} holds {units} UTF-16 units");
        }
        let mut read = body.clone();
        read["odata.etag"] = json!("W/\"1\"");
        assert_eq!(entity_of(&read, None).unwrap().data, doc);
        // A short document stays one property, as before.
        let small = entity_body(Table::Meta, "pk", "rk", &json!({"a": 1}));
        assert_eq!(small.as_object().unwrap().len(), 3);
    }

    #[test]
    fn keys_with_forbidden_characters_round_trip() {
        for k in ["plain", "a/b\\c#d?e%f", "tab\tnewline\n", "ünï"] {
            let e = encode_key(k);
            assert!(
                !e.contains(['/', '\\', '#', '?']) && !e.chars().any(char::is_control),
                "{e}"
            );
            assert_eq!(decode_key(&e), k);
        }
    }

    #[test]
    fn connection_strings() {
        let cs = SecretString::from(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        );
        let s = TableStore::from_connection_string(&cs).unwrap();
        assert_eq!(
            s.endpoint().as_str(),
            "https://acct.table.core.windows.net/"
        );
        let cs = SecretString::from(
            "AccountName=acct;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:1234/acct",
        );
        let s = TableStore::from_connection_string(&cs).unwrap();
        assert_eq!(s.endpoint().as_str(), "http://127.0.0.1:1234/acct/");
        for bad in [
            "AccountName=x",
            "AccountName=x;AccountKey=!!",
            "SharedAccessSignature=sv=1",
            "",
        ] {
            let e = TableStore::from_connection_string(&SecretString::from(bad))
                .err()
                .unwrap();
            assert!(!e.to_string().contains("!!"), "{e}");
        }
    }
}
