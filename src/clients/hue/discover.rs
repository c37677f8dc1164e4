//! Finding bridges: a one-shot mDNS query for `_hue._tcp.local` (RFC 6762, hand-written: one
//! question out, parse PTR/SRV/A/TXT answers back), with Hue's cloud discovery endpoint
//! (`GET https://discovery.meethue.com`, rate limited per IP) as the fallback.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use url::Url;

/// The service bridges announce.
pub const SERVICE: &str = "_hue._tcp.local";
const MDNS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    Ipv4Addr::new(224, 0, 0, 251),
    5353,
));

/// A bridge found on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Bridge id, when announced.
    pub id: Option<String>,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// How it was found: `mdns` or `cloud`.
    pub via: &'static str,
}

/// A DNS query for PTR `name`, with the unicast-response bit so we need not join the group.
pub fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 12, 0x80, 1]); // PTR, QU + IN
    q
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            if ptr >= msg.len() {
                return None;
            }
            pos = ptr;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    None // a pointer loop
}

/// What one mDNS answer packet says about bridges (pure; malformed input gives nothing).
pub fn parse_response(msg: &[u8]) -> Vec<Found> {
    parse_records(msg).unwrap_or_default()
}

fn parse_records(msg: &[u8]) -> Option<Vec<Found>> {
    let count = |i: usize| -> Option<usize> {
        Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]) as usize)
    };
    let (qd, rr) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut ptr_instances = Vec::new();
    let mut srv: BTreeMap<String, String> = BTreeMap::new(); // instance -> target host
    let mut a: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    let mut txt_id: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..rr {
        let (name, p) = read_name(msg, pos)?;
        let rtype = count(p)?;
        let rdlen = count(p + 8)?;
        let rdata = p + 10;
        msg.get(rdata..rdata + rdlen)?;
        match rtype {
            12 if name.eq_ignore_ascii_case(SERVICE) => {
                ptr_instances.push(read_name(msg, rdata)?.0)
            }
            33 => {
                srv.insert(
                    name.to_ascii_lowercase(),
                    read_name(msg, rdata + 6)?.0.to_ascii_lowercase(),
                );
            }
            1 if rdlen == 4 => {
                let b = &msg[rdata..rdata + 4];
                a.insert(
                    name.to_ascii_lowercase(),
                    Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                );
            }
            16 => {
                let mut i = rdata;
                while i < rdata + rdlen {
                    let l = msg[i] as usize;
                    let entry = msg.get(i + 1..(i + 1 + l).min(rdata + rdlen))?;
                    if let Some(id) = String::from_utf8_lossy(entry).strip_prefix("bridgeid=") {
                        txt_id.insert(name.to_ascii_lowercase(), id.to_ascii_lowercase());
                    }
                    i += 1 + l;
                }
            }
            _ => {}
        }
        pos = rdata + rdlen;
    }
    let mut out = Vec::new();
    for inst in ptr_instances {
        let key = inst.to_ascii_lowercase();
        let Some(addr) = srv.get(&key).and_then(|host| a.get(host)) else {
            continue;
        };
        out.push(Found {
            id: txt_id.get(&key).cloned(),
            address: *addr,
            via: "mdns",
        });
    }
    Some(out)
}

/// Asks the LAN for `_hue._tcp.local` and collects answers for `wait`.
pub async fn mdns(wait: Duration) -> std::io::Result<Vec<Found>> {
    let socket = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await?;
    socket.send_to(&query(SERVICE), MDNS).await?;
    let mut found: Vec<Found> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 9000];
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        for f in parse_response(&buf[..n]) {
            if !found.iter().any(|x| x.address == f.address) {
                found.push(f);
            }
        }
    }
    Ok(found)
}

/// Hue's cloud discovery (`base` is `https://discovery.meethue.com/` outside tests).
pub async fn cloud(base: &Url) -> Result<Vec<Found>, reqwest::Error> {
    let v: Value = reqwest::Client::new()
        .get(base.clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            Some(Found {
                id: b["id"].as_str().map(str::to_ascii_lowercase),
                address: b["internalipaddress"].as_str()?.parse().ok()?,
                via: "cloud",
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(out: &mut Vec<u8>, n: &str) {
        for l in n.split('.') {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }

    fn rr(out: &mut Vec<u8>, owner: &[u8], rtype: u16, rdata: &[u8]) {
        out.extend_from_slice(owner);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&[0x80, 1, 0, 0, 0x11, 0x94]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }

    /// A response like a bridge's: PTR in answers, SRV/TXT/A as additionals, with compression.
    fn bridge_response() -> Vec<u8> {
        let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 3];
        let service_at = m.len();
        let mut svc = Vec::new();
        name(&mut svc, "_hue._tcp.local");
        let mut instance = vec![19];
        instance.extend_from_slice(b"Hue Bridge - 1A2B3C");
        instance.extend_from_slice(&[0xC0, service_at as u8]);
        rr(&mut m, &svc, 12, &instance);
        let instance_at = m.len() - instance.len();
        let inst_ptr = [0xC0, instance_at as u8];
        let mut host = Vec::new();
        name(&mut host, "ecb5fa1a2b3c.local");
        let mut srv = vec![0, 0, 0, 0, 1, 187];
        srv.extend_from_slice(&host);
        rr(&mut m, &inst_ptr, 33, &srv);
        let mut txt = vec![25];
        txt.extend_from_slice(b"bridgeid=ecb5fafffe1a2b3c");
        txt.extend_from_slice(&[12]);
        txt.extend_from_slice(b"modelid=BSB2");
        rr(&mut m, &inst_ptr, 16, &txt);
        rr(&mut m, &host, 1, &[192, 168, 1, 20]);
        m
    }

    #[test]
    fn parses_a_bridge_answer() {
        let found = parse_response(&bridge_response());
        assert_eq!(
            found,
            vec![Found {
                id: Some("ecb5fafffe1a2b3c".into()),
                address: Ipv4Addr::new(192, 168, 1, 20),
                via: "mdns"
            }]
        );
    }

    #[test]
    fn malformed_packets_give_nothing() {
        let good = bridge_response();
        for cut in 0..good.len() {
            let _ = parse_response(&good[..cut]); // must not panic
        }
        assert!(parse_response(&[]).is_empty());
        // A pointer to itself.
        let mut loop_pkt = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        loop_pkt.extend_from_slice(&[0xC0, 12]);
        assert!(parse_response(&loop_pkt).is_empty());
    }

    #[test]
    fn query_asks_for_ptr_with_unicast_response() {
        let q = query(SERVICE);
        assert_eq!(&q[..12], &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[q.len() - 4..], &[0, 12, 0x80, 1]);
        assert_eq!(read_name(&q, 12).unwrap().0, SERVICE);
    }
}
