//! Table tests for the PBX events body and its authentication.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn secret() -> SecretString {
    SecretString::from("s3cret-token")
}

fn body(ts: DateTime<Utc>) -> Vec<u8> {
    format!(
        r#"{{"extension":"101","state":"in_call","timestamp":"{}"}}"#,
        ts.to_rfc3339()
    )
    .into_bytes()
}

#[test]
fn parse_table() {
    let ts = "2026-03-02T09:00:00Z";
    let at = now();
    let line = |e: &str, s| PbxEvent::Line {
        extension: Extension(e.into()),
        state: s,
        at,
    };
    let prof = |e: &str, p: &str| PbxEvent::Profile {
        extension: Extension(e.into()),
        profile: Profile::new(p),
        at,
    };
    let ok: Vec<(String, Vec<PbxEvent>)> = vec![
        (
            format!(r#"{{"extension":"101","state":"idle","timestamp":"{ts}"}}"#),
            vec![line("101", LineState::Idle)],
        ),
        (
            format!(r#"{{"extension":" 102 ","state":"IN_CALL","timestamp":"{ts}"}}"#),
            vec![line("102", LineState::InCall)],
        ),
        (
            r#"{"extension":"7","profile":"Away","timestamp":"2026-03-02T10:00:00+01:00"}"#
                .to_owned(),
            vec![prof("7", "Away")],
        ),
        (
            format!(
                r#"{{"extension":"7","state":"held","profile":"On Break","timestamp":"{ts}","extra":1}}"#
            ),
            vec![line("7", LineState::Held), prof("7", "On Break")],
        ),
        (
            format!(
                r#"{{"events":[{{"extension":"1","state":"ringing","timestamp":"{ts}"}},{{"extension":"2","state":"dialing","timestamp":"{ts}"}}]}}"#
            ),
            vec![line("1", LineState::Ringing), line("2", LineState::Dialing)],
        ),
    ];
    for (b, want) in ok {
        assert_eq!(parse(b.as_bytes()).unwrap(), want, "{b}");
    }
    let many: Vec<String> = (0..101)
        .map(|i| format!(r#"{{"extension":"{i}","state":"idle","timestamp":"{ts}"}}"#))
        .collect();
    let too_many = format!(r#"{{"events":[{}]}}"#, many.join(","));
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let bad: Vec<(String, &str)> = vec![
        ("not json".into(), "body is not JSON"),
        ("[1]".into(), "body: expected a JSON object"),
        (huge, "larger than 64 KiB"),
        (
            format!(r#"{{"state":"idle","timestamp":"{ts}"}}"#),
            "extension: required",
        ),
        (
            format!(r#"{{"extension":"","state":"idle","timestamp":"{ts}"}}"#),
            "extension: empty",
        ),
        (
            format!(r#"{{"extension":101,"state":"idle","timestamp":"{ts}"}}"#),
            "extension: expected a string",
        ),
        (
            format!(r#"{{"extension":"1","timestamp":"{ts}"}}"#),
            "state: required unless profile",
        ),
        (
            format!(r#"{{"extension":"1","state":"unavailable","timestamp":"{ts}"}}"#),
            "state: unknown",
        ),
        (
            format!(
                r#"{{"extension":"1","state":"idle","profile":"{}","timestamp":"{ts}"}}"#,
                "p".repeat(65)
            ),
            "profile: longer than 64",
        ),
        (
            r#"{"extension":"1","state":"idle"}"#.into(),
            "timestamp: required",
        ),
        (
            r#"{"extension":"1","state":"idle","timestamp":"yesterday"}"#.into(),
            "timestamp: not an RFC 3339",
        ),
        (r#"{"events":[]}"#.into(), "events: empty batch"),
        (r#"{"events":{}}"#.into(), "events: expected an array"),
        (too_many, "at most 100 per request"),
        (
            format!(
                r#"{{"events":[{{"extension":"1","state":"idle","timestamp":"{ts}"}},{{"extension":"2","state":"bogus","timestamp":"{ts}"}}]}}"#
            ),
            "events[1].state: unknown",
        ),
    ];
    for (b, want) in bad {
        match parse(b.as_bytes()) {
            Err(EventsError::Malformed(m)) => {
                assert!(m.contains(want), "{m:?} should contain {want:?}");
                assert!(!m.contains('\n'));
            }
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn authentication_table() {
    let b = body(now());
    let t = now().timestamp();
    let good_sig = format!("t={t},v1={}", sign(&secret(), t, &b));
    let old_t = t - MAX_SKEW_SECS - 1;
    let stale_sig = format!("t={old_t},v1={}", sign(&secret(), old_t, &b));
    let future_t = t + MAX_SKEW_SECS + 1;
    let future_sig = format!("t={future_t},v1={}", sign(&secret(), future_t, &b));
    let other_sig = format!("t={t},v1={}", sign(&SecretString::from("other"), t, &b));
    let rotated = format!("t={t},v1=00ff,v1={}", sign(&secret(), t, &b));
    type Headers = (Option<&'static str>, Option<String>);
    let h = |a: Option<&'static str>, s: Option<String>| -> Headers { (a, s) };
    let cases: Vec<(Headers, Result<(), &str>)> = vec![
        (h(Some("Bearer s3cret-token"), None), Ok(())),
        (
            h(Some("Bearer s3cret-tokeN"), None),
            Err("wrong bearer secret"),
        ),
        (h(Some("Bearer s3cret"), None), Err("wrong bearer secret")),
        (h(Some("Bearer "), None), Err("wrong bearer secret")),
        (h(Some("Basic czNjcmV0"), None), Err("not a bearer")),
        (h(None, None), Err("no credential")),
        (h(None, Some(good_sig)), Ok(())),
        (h(None, Some(rotated)), Ok(())),
        (h(None, Some(other_sig)), Err("wrong signature")),
        (h(None, Some(stale_sig)), Err("outside 5 minutes")),
        (h(None, Some(future_sig)), Err("outside 5 minutes")),
        (
            h(None, Some(format!("v1={}", sign(&secret(), t, &b)))),
            Err("without a valid t"),
        ),
        (
            h(None, Some(format!("t={t},v1=zz"))),
            Err("wrong signature"),
        ),
    ];
    for ((auth, sig), want) in cases {
        let headers = AuthHeaders {
            authorization: auth,
            signature: sig.as_deref(),
        };
        let got = authenticate(headers, &b, &secret(), now());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(EventsError::Unauthorized { reason }), Err(w)) => {
                assert!(reason.contains(w), "{reason} vs {w}")
            }
            (got, want) => panic!("{auth:?} {sig:?}: {got:?} vs {want:?}"),
        }
    }
}

#[test]
fn stale_or_future_events_are_refused_even_with_a_good_credential() {
    let bearer = AuthHeaders {
        authorization: Some("Bearer s3cret-token"),
        signature: None,
    };
    for (offset, ok) in [(-301, false), (-299, true), (299, true), (301, false)] {
        let b = body(now() + Duration::seconds(offset));
        let got = accept(bearer, &b, &secret(), now(), &mut ReplayGuard::default());
        assert_eq!(got.is_ok(), ok, "{offset}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(EventsError::Unauthorized { .. })));
        }
    }
}

#[test]
fn a_body_accepted_once_is_refused_again_whichever_credential_comes_with_it() {
    let mut guard = ReplayGuard::default();
    let b = body(now());
    let bearer = AuthHeaders {
        authorization: Some("Bearer s3cret-token"),
        signature: None,
    };
    assert!(accept(bearer, &b, &secret(), now(), &mut guard).is_ok());
    let t = now().timestamp() + 10;
    let sig = format!("t={t},v1={}", sign(&secret(), t, &b));
    let signed = AuthHeaders {
        authorization: None,
        signature: Some(&sig),
    };
    let later = now() + Duration::seconds(10);
    let err = accept(signed, &b, &secret(), later, &mut guard).unwrap_err();
    assert_eq!(err.log_reason(), "unauthorized: replayed body");
    assert_eq!(err.to_string(), "unauthorized");
    assert!(accept(bearer, &b, &secret(), later, &mut guard).is_err());
}

#[test]
fn a_bad_event_in_a_batch_accepts_nothing_and_is_not_remembered() {
    let mut guard = ReplayGuard::default();
    let b = br#"{"events":[{"extension":"1","state":"idle","timestamp":"2026-03-02T09:00:00Z"},{"extension":"2","timestamp":"2026-03-02T09:00:00Z"}]}"#;
    let bearer = AuthHeaders {
        authorization: Some("Bearer s3cret-token"),
        signature: None,
    };
    let err = accept(bearer, b, &secret(), now(), &mut guard).unwrap_err();
    assert!(matches!(err, EventsError::Malformed(m) if m.starts_with("events[1].state")));
    assert!(guard.is_empty());
}

#[test]
fn the_replay_guard_forgets_after_five_minutes_and_stays_bounded() {
    let mut g = ReplayGuard::with_capacity(3);
    g.insert([1; 32], now());
    assert!(g.contains(&[1; 32], now() + Duration::seconds(299)));
    assert!(!g.contains(&[1; 32], now() + Duration::seconds(300)));
    assert!(g.is_empty());
    for i in 0..10u8 {
        g.insert([i; 32], now());
    }
    assert_eq!(g.len(), 3);
    assert!(g.contains(&[9; 32], now()));
    assert!(!g.contains(&[0; 32], now()));
}
