//! The HID output reports of each supported busylight (pure: no I/O).
//!
//! Every report returned here is the buffer handed to `hid_write`: its first byte is the
//! report id, `0x00` for all of these lights (they have a single, unnumbered output report;
//! the kernel and hidapi strip it before the USB transfer).
//!
//! Sources of the byte tables (no vendor publishes a full SDK document openly; these are the
//! maintained open-source descriptions the tables below were checked against):
//! * **Luxafor Flag**: the Luxafor HID command set as described in the "BusyLight for
//!   Humans" project (github.com/JnyJny/busylight, `docs/hardware/devices/luxafor.md` and
//!   `busylight_core/vendors/luxafor/implementation/{state,enums}.py`) and the
//!   `luxafor-python` module: command `0x01` (static colour), LED selector `0xFF` (all six
//!   LEDs), then red, green, blue, in an 8-byte packet.
//! * **Kuando Busylight Alpha/Omega**: Kuando's "Busylight API rev 2.2" as transcribed in
//!   JnyJny/busylight `docs/hardware/devices/kuando.md` (the 64-byte packet: 7 steps of 8
//!   bytes, then sensitivity, timeout, trigger, a 3-byte pad of `0xFF`, and a 16-bit
//!   big-endian checksum = sum of bytes 0..62) and `vendors/kuando/implementation/*.py`
//!   (opcodes: jump `0x1`, keep-alive `0x8`; colours are PWM duty 0..=100, scaled from
//!   0..=255 by truncation). `yaddran/busylight` (`src/busylight.ts`, node) was used as a
//!   cross-check of the keep-alive step `0x8F` and the checksum placement.
//! * **Embrava Blynclight**: JnyJny/busylight `docs/hardware/devices/embrava.md` (the
//!   9-byte control word: `0x00`, red, **blue**, **green**, a flags byte, music, volume,
//!   `0xFF`, `0x22`) with the bit positions of the flags byte taken from
//!   `vendors/embrava/implementation/blynclight_fields.py` (off = bit 0, dim = bit 1,
//!   flash = bit 2, flash speed = bits 3..5, slow = 1 after a reset).

/// The supported lights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// Luxafor Flag.
    LuxaforFlag,
    /// Kuando Busylight UC Alpha.
    KuandoAlpha,
    /// Kuando Busylight UC Omega.
    KuandoOmega,
    /// Embrava Blynclight (and Mini, Plus).
    Blynclight,
}

/// Every known (vendor id, product id, model). `0x04d8` is Microchip's vendor id, shared by
/// the Luxafor Flag and the first Kuando Alpha, so both ids are always matched together.
pub const DEVICES: &[(u16, u16, Model)] = &[
    (0x04d8, 0xf372, Model::LuxaforFlag),
    (0x04d8, 0xf848, Model::KuandoAlpha),
    (0x27bb, 0x3bca, Model::KuandoAlpha),
    (0x27bb, 0x3bcb, Model::KuandoAlpha),
    (0x27bb, 0x3bce, Model::KuandoAlpha),
    (0x27bb, 0x3bcd, Model::KuandoOmega),
    (0x27bb, 0x3bcf, Model::KuandoOmega),
    (0x2c0d, 0x0001, Model::Blynclight),
    (0x2c0d, 0x000a, Model::Blynclight),
    (0x2c0d, 0x000c, Model::Blynclight),
    (0x0e53, 0x2516, Model::Blynclight),
    (0x0e53, 0x2517, Model::Blynclight),
];

/// The model with these ids, if supported.
pub fn model_for(vendor_id: u16, product_id: u16) -> Option<Model> {
    DEVICES
        .iter()
        .find(|(v, p, _)| *v == vendor_id && *p == product_id)
        .map(|(_, _, m)| *m)
}

impl Model {
    /// For people: `Luxafor Flag`, `Kuando Busylight Omega`, …
    pub fn name(self) -> &'static str {
        match self {
            Model::LuxaforFlag => "Luxafor Flag",
            Model::KuandoAlpha => "Kuando Busylight Alpha",
            Model::KuandoOmega => "Kuando Busylight Omega",
            Model::Blynclight => "Embrava Blynclight",
        }
    }

    /// Whether the light turns itself off without a command every few seconds (Kuando:
    /// after the keep-alive timeout, at most 15 s; see [`keep_alive_report`]).
    pub fn needs_keep_alive(self) -> bool {
        matches!(self, Model::KuandoAlpha | Model::KuandoOmega)
    }
}

/// How often a Kuando light gets [`keep_alive_report`]: well inside its timeout.
pub const KEEP_ALIVE_EVERY_SECS: u64 = 10;
/// The timeout written into the keep-alive step (seconds, 4 bits: at most 15).
pub const KEEP_ALIVE_TIMEOUT_SECS: u8 = 15;

/// The report that shows `rgb` (0..=255 each; `[0, 0, 0]` is off) on a light of `model`.
pub fn color_report(model: Model, rgb: [u8; 3]) -> Vec<u8> {
    match model {
        Model::LuxaforFlag => luxafor(rgb),
        Model::KuandoAlpha | Model::KuandoOmega => kuando(kuando_jump(rgb)),
        Model::Blynclight => blynclight(rgb),
    }
}

/// The report that keeps a Kuando light showing what it shows; `None` for the others.
pub fn keep_alive_report(model: Model) -> Option<Vec<u8>> {
    model.needs_keep_alive().then(|| {
        kuando([
            KUANDO_KEEP_ALIVE << 4 | KEEP_ALIVE_TIMEOUT_SECS,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ])
    })
}

/// Luxafor: command `0x01` (static colour), LEDs `0xFF` (all), r, g, b, padding to 8 bytes.
fn luxafor([r, g, b]: [u8; 3]) -> Vec<u8> {
    const STATIC_COLOUR: u8 = 0x01;
    const ALL_LEDS: u8 = 0xff;
    vec![0x00, STATIC_COLOUR, ALL_LEDS, r, g, b, 0, 0, 0]
}

const KUANDO_JUMP: u8 = 0x1;
const KUANDO_KEEP_ALIVE: u8 = 0x8;

/// A Kuando colour 0..=255 as its PWM duty 0..=100 (truncated, like the reference).
fn kuando_pwm(c: u8) -> u8 {
    (u16::from(c) * 100 / 255) as u8
}

/// Step 0 for a steady colour: jump to step 0 (itself), repeat 0, r, g, b as PWM, on/off
/// times 0, no audio.
fn kuando_jump([r, g, b]: [u8; 3]) -> [u8; 8] {
    [
        KUANDO_JUMP << 4,
        0,
        kuando_pwm(r),
        kuando_pwm(g),
        kuando_pwm(b),
        0,
        0,
        0,
    ]
}

/// The 64-byte Kuando packet with `step0` (steps 1..=6 zero), behind the report id.
fn kuando(step0: [u8; 8]) -> Vec<u8> {
    let mut p = [0u8; 64];
    p[..8].copy_from_slice(&step0);
    // 56 sensitivity, 57 timeout, 58 trigger: unused by Alpha and Omega, zero.
    p[59..62].copy_from_slice(&[0xff, 0xff, 0xff]);
    let sum = kuando_checksum(&p);
    p[62..].copy_from_slice(&sum.to_be_bytes());
    let mut report = Vec::with_capacity(65);
    report.push(0x00);
    report.extend_from_slice(&p);
    report
}

/// The Kuando checksum: the sum of the packet's first 62 bytes, as 16 bits.
pub fn kuando_checksum(packet: &[u8; 64]) -> u16 {
    packet[..62]
        .iter()
        .fold(0u16, |s, b| s.wrapping_add(u16::from(*b)))
}

/// Blynclight: `0x00`, red, blue, green, flags, music, volume, `0xFF`, `0x22`.
fn blynclight([r, g, b]: [u8; 3]) -> Vec<u8> {
    const OFF: u8 = 1 << 0;
    const SPEED_SLOW: u8 = 1 << 3;
    let flags = if [r, g, b] == [0, 0, 0] {
        OFF | SPEED_SLOW
    } else {
        SPEED_SLOW
    };
    vec![0x00, r, b, g, flags, 0x00, 0x00, 0xff, 0x22]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [u8; 3] = [255, 0, 0];
    const GREEN: [u8; 3] = [0, 255, 0];
    const OFF: [u8; 3] = [0, 0, 0];

    #[test]
    fn ids_pick_the_model() {
        assert_eq!(model_for(0x04d8, 0xf372), Some(Model::LuxaforFlag));
        assert_eq!(model_for(0x04d8, 0xf848), Some(Model::KuandoAlpha));
        assert_eq!(model_for(0x27bb, 0x3bcd), Some(Model::KuandoOmega));
        assert_eq!(model_for(0x2c0d, 0x0001), Some(Model::Blynclight));
        assert_eq!(model_for(0x0e53, 0x2516), Some(Model::Blynclight));
        assert_eq!(model_for(0x04d8, 0x0001), None);
        assert!(Model::KuandoOmega.needs_keep_alive());
        assert!(!Model::LuxaforFlag.needs_keep_alive());
    }

    #[test]
    fn luxafor_reports() {
        let t = |c| color_report(Model::LuxaforFlag, c);
        assert_eq!(t(RED), [0x00, 0x01, 0xff, 0xff, 0x00, 0x00, 0, 0, 0]);
        assert_eq!(t(GREEN), [0x00, 0x01, 0xff, 0x00, 0xff, 0x00, 0, 0, 0]);
        assert_eq!(t(OFF), [0x00, 0x01, 0xff, 0x00, 0x00, 0x00, 0, 0, 0]);
        assert_eq!(t([1, 2, 3]), [0x00, 0x01, 0xff, 1, 2, 3, 0, 0, 0]);
        assert_eq!(keep_alive_report(Model::LuxaforFlag), None);
    }

    #[test]
    fn blynclight_reports_are_red_blue_green() {
        let t = |c| color_report(Model::Blynclight, c);
        assert_eq!(
            t(RED),
            [0x00, 0xff, 0x00, 0x00, 0x08, 0x00, 0x00, 0xff, 0x22]
        );
        assert_eq!(
            t(GREEN),
            [0x00, 0x00, 0x00, 0xff, 0x08, 0x00, 0x00, 0xff, 0x22]
        );
        // Blue goes in the second colour byte (the device's order is red, blue, green).
        assert_eq!(
            t([0, 0, 255]),
            [0x00, 0x00, 0xff, 0x00, 0x08, 0x00, 0x00, 0xff, 0x22]
        );
        // Off: the off bit set.
        assert_eq!(
            t(OFF),
            [0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0xff, 0x22]
        );
        assert_eq!(keep_alive_report(Model::Blynclight), None);
    }

    /// The 64-byte Kuando packet (after the report id) with `step0` and the checksum.
    fn kuando_expected(step0: [u8; 8], checksum: [u8; 2]) -> Vec<u8> {
        let mut v = vec![0x00];
        v.extend_from_slice(&step0);
        v.extend_from_slice(&[0u8; 48]); // steps 1..=6
        v.extend_from_slice(&[0, 0, 0, 0xff, 0xff, 0xff]);
        v.extend_from_slice(&checksum);
        v
    }

    #[test]
    fn kuando_reports() {
        for model in [Model::KuandoAlpha, Model::KuandoOmega] {
            let t = |c| color_report(model, c);
            // Red: jump (0x10), red PWM 100 (0x64). Checksum 0x10 + 0x64 + 3 × 0xff = 0x0371.
            assert_eq!(
                t(RED),
                kuando_expected([0x10, 0, 0x64, 0, 0, 0, 0, 0], [0x03, 0x71])
            );
            assert_eq!(
                t(GREEN),
                kuando_expected([0x10, 0, 0, 0x64, 0, 0, 0, 0], [0x03, 0x71])
            );
            // Off: a jump to black; checksum 0x10 + 0x2fd = 0x030d.
            assert_eq!(
                t(OFF),
                kuando_expected([0x10, 0, 0, 0, 0, 0, 0, 0], [0x03, 0x0d])
            );
            // Keep-alive: opcode 8, timeout 15 s; checksum 0x8f + 0x2fd = 0x038c.
            assert_eq!(
                keep_alive_report(model).unwrap(),
                kuando_expected([0x8f, 0, 0, 0, 0, 0, 0, 0], [0x03, 0x8c])
            );
            assert_eq!(t(RED).len(), 65);
        }
    }

    #[test]
    fn kuando_scales_to_pwm_and_sums_past_a_byte() {
        assert_eq!(kuando_pwm(255), 100);
        assert_eq!(kuando_pwm(128), 50);
        assert_eq!(kuando_pwm(2), 0);
        // White: 0x10 + 3 × 0x64 + 3 × 0xff = 0x0439 (the sum carries into the high byte).
        let white = color_report(Model::KuandoOmega, [255, 255, 255]);
        assert_eq!(&white[1..9], &[0x10, 0, 0x64, 0x64, 0x64, 0, 0, 0]);
        assert_eq!(&white[63..], &[0x04, 0x39]);
        let mut p = [0u8; 64];
        p[..62].fill(0xff);
        assert_eq!(kuando_checksum(&p), 62 * 0xff);
    }
}
