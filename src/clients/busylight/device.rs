//! Busylight device I/O through hidapi (the `busylight` feature): discovery by vendor and
//! product id, and [`BusylightSink`], which keeps every plugged-in light showing the latest
//! colour.
//!
//! hidapi is blocking, so the sink owns one thread: it writes a new colour to every open
//! light at once, re-enumerates every [`SCAN_EVERY`] (a light plugged in later is opened and
//! shown the current colour; one that fails a write is closed and found again when it comes
//! back), and re-sends the Kuando keep-alive every
//! [`protocol::KEEP_ALIVE_EVERY_SECS`] seconds.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hidapi::{HidApi, HidDevice};

use super::protocol::{self, Model};
use crate::core::lights::LightState;

/// How often the sink looks for lights plugged in since.
pub const SCAN_EVERY: Duration = Duration::from_secs(3);

/// Why a light could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BusylightError {
    /// hidapi failed (no permission on /dev/hidraw*, no hidraw in the kernel, …).
    #[error("USB HID: {0}")]
    Hid(String),
    /// The sink's thread is gone.
    #[error("the busylight thread stopped")]
    Stopped,
}

impl From<hidapi::HidError> for BusylightError {
    fn from(e: hidapi::HidError) -> Self {
        Self::Hid(e.to_string())
    }
}

/// A supported light that is plugged in.
#[derive(Debug, Clone)]
pub struct Found {
    /// Which light.
    pub model: Model,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// The hidapi path (`/dev/hidraw3`).
    pub path: CString,
    /// The product string the device reports, if any.
    pub product: Option<String>,
}

impl Found {
    /// `Kuando Busylight Omega (27bb:3bcd) at /dev/hidraw3`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:04x}:{:04x}) at {}",
            self.model.name(),
            self.vendor_id,
            self.product_id,
            self.path.to_string_lossy()
        )
    }
}

/// The supported lights hidapi currently sees (one entry per HID interface path).
fn supported(api: &HidApi) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for d in api.device_list() {
        let Some(model) = protocol::model_for(d.vendor_id(), d.product_id()) else {
            continue;
        };
        if out.iter().any(|f| f.path.as_c_str() == d.path()) {
            continue;
        }
        out.push(Found {
            model,
            vendor_id: d.vendor_id(),
            product_id: d.product_id(),
            path: d.path().to_owned(),
            product: d.product_string().map(str::to_owned),
        });
    }
    out
}

/// Every supported light plugged in now (`busylight list`).
pub fn list() -> Result<Vec<Found>, BusylightError> {
    Ok(supported(&HidApi::new()?))
}

/// Whether this process may open `light` (`doctor`): opened and closed again, nothing
/// written.
pub fn can_open(light: &Found) -> Result<(), BusylightError> {
    HidApi::new()?.open_path(&light.path)?;
    Ok(())
}

/// Each light `show_once` wrote to, with its own outcome.
pub type Shown = Vec<(Found, Result<(), BusylightError>)>;

/// Shows `rgb` on every supported light once (`busylight test`); Kuando lights go dark again
/// after their keep-alive timeout. Returns the lights written to, with the error of each
/// that failed.
pub fn show_once(rgb: [u8; 3]) -> Result<Shown, BusylightError> {
    let api = HidApi::new()?;
    Ok(supported(&api)
        .into_iter()
        .map(|f| {
            let r = api
                .open_path(&f.path)
                .and_then(|d| d.write(&protocol::color_report(f.model, rgb)))
                .map(|_| ())
                .map_err(BusylightError::from);
            (f, r)
        })
        .collect())
}

/// What the sink's thread last saw, for the status page.
#[derive(Debug, Clone, Default)]
pub struct SinkView {
    /// The lights open now.
    pub lights: Vec<String>,
    /// The last hidapi error, if any.
    pub last_error: Option<String>,
}

/// Every plugged-in busylight, driven from its own thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct BusylightSink {
    tx: Sender<[u8; 3]>,
    view: Arc<Mutex<SinkView>>,
}

impl BusylightSink {
    /// Starts the thread (it finds lights within [`SCAN_EVERY`]).
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel();
        let view: Arc<Mutex<SinkView>> = Arc::default();
        let v = view.clone();
        std::thread::Builder::new()
            .name("busylight".into())
            .spawn(move || run(rx, v))
            .expect("a thread starts");
        Self { tx, view }
    }

    /// Shows a light state on every light (now, and on lights plugged in later).
    pub async fn apply(&self, s: &LightState) -> Result<(), BusylightError> {
        self.tx.send(s.rgb()).map_err(|_| BusylightError::Stopped)
    }

    /// What the thread last saw.
    pub fn view(&self) -> SinkView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// One open light.
struct Open {
    found: Found,
    device: HidDevice,
}

/// The sink's thread: the latest colour wins; lights come and go.
fn run(rx: Receiver<[u8; 3]>, view: Arc<Mutex<SinkView>>) {
    let mut api: Option<HidApi> = None;
    let mut open: HashMap<CString, Open> = HashMap::new();
    let mut want: Option<[u8; 3]> = None;
    let mut last_scan: Option<Instant> = None;
    let mut last_keep_alive = Instant::now();
    let keep_alive_every = Duration::from_secs(protocol::KEEP_ALIVE_EVERY_SECS);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(mut c) => {
                // A burst: only the latest counts.
                while let Ok(next) = rx.try_recv() {
                    c = next;
                }
                want = Some(c);
                write_all(&mut open, |m| Some(protocol::color_report(m, c)), &view);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            last_scan = Some(Instant::now());
            scan(&mut api, &mut open, want, &view);
        }
        if last_keep_alive.elapsed() >= keep_alive_every {
            last_keep_alive = Instant::now();
            if want.is_some_and(|c| c != [0, 0, 0]) {
                write_all(&mut open, protocol::keep_alive_report, &view);
            }
        }
    }
}

/// Re-enumerates: opens new lights (showing them `want`), forgets unplugged ones.
fn scan(
    api: &mut Option<HidApi>,
    open: &mut HashMap<CString, Open>,
    want: Option<[u8; 3]>,
    view: &Mutex<SinkView>,
) {
    let refreshed = match api {
        Some(a) => a.refresh_devices().map(|()| a),
        None => HidApi::new().map(|a| api.insert(a)),
    };
    let a = match refreshed {
        Ok(a) => a,
        Err(e) => {
            note_error(view, e.to_string());
            return;
        }
    };
    let present = supported(a);
    open.retain(|path, _| present.iter().any(|f| &f.path == path));
    for f in present {
        if open.contains_key(&f.path) {
            continue;
        }
        match a.open_path(&f.path) {
            Ok(device) => {
                tracing::info!(light = %f.describe(), "busylight found");
                if let Some(c) = want {
                    if let Err(e) = device.write(&protocol::color_report(f.model, c)) {
                        note_error(view, format!("{}: {e}", f.describe()));
                        continue;
                    }
                }
                open.insert(f.path.clone(), Open { found: f, device });
            }
            Err(e) => note_error(view, format!("{}: {e}", f.describe())),
        }
    }
    set_lights(open, view);
}

/// Writes each open light its report; a light that fails is closed (found again on the next
/// scan if it is still there).
fn write_all(
    open: &mut HashMap<CString, Open>,
    report: impl Fn(Model) -> Option<Vec<u8>>,
    view: &Mutex<SinkView>,
) {
    let mut failed = Vec::new();
    for (path, o) in open.iter() {
        let Some(bytes) = report(o.found.model) else {
            continue;
        };
        if let Err(e) = o.device.write(&bytes) {
            tracing::warn!(light = %o.found.describe(), error = %e, "busylight write failed");
            note_error(view, format!("{}: {e}", o.found.describe()));
            failed.push(path.clone());
        }
    }
    for p in failed {
        open.remove(&p);
    }
    set_lights(open, view);
}

fn note_error(view: &Mutex<SinkView>, e: String) {
    if let Ok(mut v) = view.lock() {
        v.last_error = Some(e);
    }
}

fn set_lights(open: &HashMap<CString, Open>, view: &Mutex<SinkView>) {
    if let Ok(mut v) = view.lock() {
        let mut lights: Vec<String> = open.values().map(|o| o.found.describe()).collect();
        lights.sort();
        v.lights = lights;
    }
}
