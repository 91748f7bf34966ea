//! Recordings and call quality: `GET /api/telephony/calls/{callId}/recording`
//! (Range, scope, missing files, paths that leave the directory, audit),
//! quality in the call detail and history, and the agents' `recordCalls`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chrono::{Duration, Utc};
use domain::{CallEvent, CallEventKind as K, Direction, HangupCause, MediaDirection, Party};
use serde_json::json;

use crate::common::{Auth, Resp, TestApp};

/// A 16-bit stereo 8 kHz WAV of `frames` frames with a recognisable
/// pattern (so a range out of place shows).
fn wav(frames: u32) -> Vec<u8> {
    let data = frames * 4;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&2u16.to_le_bytes()); // stereo
    v.extend_from_slice(&8_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    v.extend((0..data).map(|i| (i % 251) as u8));
    v
}

fn quality(leg: u32, direction: MediaDirection, mos: f32, rtt: Option<f32>) -> K {
    K::Quality {
        leg,
        direction,
        packets: 1_000,
        lost: 20,
        jitter_ms: 4.5,
        rtt_ms: rtt,
        mos,
        codec: "PCMU".into(),
    }
}

/// Records an answered call `id` from agent `a` (1000) to agent `b`
/// (1001), with quality figures and, when `recording` is given, a
/// recording at that relative path.
async fn finished_call(app: &TestApp, id: &str, a: i64, b: i64, recording: Option<&str>) {
    let t0 = u64::try_from((Utc::now() - Duration::minutes(5)).timestamp_millis()).expect("ms");
    let ev = |dt: u64, kind| CallEvent {
        call_id: id.into(),
        at_ms: t0 + dt,
        kind,
    };
    let party = |number: &str, agent| Party {
        number: number.into(),
        agent_id: Some(agent),
    };
    let mut events = vec![
        ev(
            0,
            K::Started {
                direction: Direction::Internal,
                caller: party("1000", a),
                callee: party("1001", b),
                transport: "ws".into(),
            },
        ),
        ev(
            1,
            K::LegAdded {
                leg: 1,
                party: party("1001", b),
                transport: "ws".into(),
            },
        ),
        ev(500, K::Answered { leg: 1 }),
        ev(
            10_000,
            K::Ended {
                cause: HangupCause::CallerBye,
            },
        ),
        // After the end, as the media plane reports them; the later
        // figures of leg 0 inbound win.
        ev(10_010, quality(0, MediaDirection::Inbound, 4.4, Some(20.0))),
        ev(10_020, quality(0, MediaDirection::Inbound, 4.3, Some(24.0))),
        ev(10_020, quality(0, MediaDirection::Outbound, 4.35, None)),
        ev(10_020, quality(1, MediaDirection::Inbound, 3.8, Some(30.0))),
    ];
    if let Some(path) = recording {
        events.push(ev(
            10_100,
            K::Recording {
                path: path.into(),
                bytes: 4_044,
                duration_ms: 125,
                dropped_frames: 1,
            },
        ));
    }
    app.services.calls.record(&events).await.expect("record");
}

async fn get_range(app: &TestApp, path: &str, range: Option<&str>, auth: &Auth) -> Resp {
    let mut b = Request::builder().method(Method::GET).uri(path);
    match auth {
        Auth::Cookie(c) => b = b.header(header::COOKIE, format!("centralita_session={c}")),
        Auth::Bearer(t) => b = b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        Auth::None => {}
    }
    if let Some(r) = range {
        b = b.header(header::RANGE, r);
    }
    app.raw(b.body(Body::empty()).expect("request")).await
}

fn header_of(r: &Resp, name: header::HeaderName) -> Option<&str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn quality_in_the_call_detail_and_history() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    finished_call(&app, "q-call", a, b, Some("q-call.wav")).await;
    // A call the media plane never saw: no quality, no recording.
    app.record_call(
        "plain-call",
        ("1000", Some(a)),
        ("1001", Some(b)),
        Utc::now() - Duration::minutes(1),
        Some(Duration::seconds(1)),
        Some((Duration::seconds(3), HangupCause::CalleeBye)),
    )
    .await;

    let r = app.get("/api/telephony/calls/q-call", &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let call = &r.json()["call"];
    // The CDR figures are those of the end, untouched by what came after.
    assert_eq!(
        (call["billsec"].as_i64(), call["disposition"].as_str()),
        (Some(9), Some("ANSWERED"))
    );
    assert_eq!(call["hasRecording"], true);
    assert_eq!(
        call["recording"],
        json!({"bytes": 4044, "durationMs": 125, "droppedFrames": 1})
    );
    let q = &call["quality"];
    // Worst MOS 3.8: fair (3.60 <= MOS < 4.03).
    assert_eq!(q["class"], "fair");
    assert!((q["worstMos"].as_f64().expect("mos") - 3.8).abs() < 1e-4);
    let legs: Vec<String> = q["legs"]
        .as_array()
        .expect("legs")
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {} {} {} {} {}",
                l["leg"],
                l["direction"].as_str().unwrap_or("?"),
                l["packets"],
                l["lost"],
                l["lossPercent"],
                l["rttMs"],
                l["class"].as_str().unwrap_or("?"),
                l["codec"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        legs,
        [
            "0 inbound 1000 20 1.96 24.0 good PCMU",
            "0 outbound 1000 20 1.96 null good PCMU",
            "1 inbound 1000 20 1.96 30.0 fair PCMU",
        ]
    );
    // The recording's place is never shown.
    assert!(!r.text.contains("q-call.wav"), "{}", r.text);

    let r = app.get("/api/telephony/calls/history", &admin).await;
    let calls = r.json()["calls"].as_array().expect("calls").clone();
    let by_id = |id: &str| {
        calls
            .iter()
            .find(|c| c["callId"] == id)
            .cloned()
            .expect("call listed")
    };
    let q = by_id("q-call");
    assert_eq!(
        (q["hasRecording"].as_bool(), q["quality"]["class"].as_str()),
        (Some(true), Some("fair"))
    );
    assert_eq!(q["quality"]["legs"].as_array().map(Vec::len), Some(3));
    let plain = by_id("plain-call");
    assert_eq!(
        (&plain["hasRecording"], &plain["quality"]),
        (&json!(false), &json!(null))
    );

    let r = app
        .get("/api/telephony/calls/history?format=csv", &admin)
        .await;
    let line = r
        .text
        .lines()
        .find(|l| l.contains("q-call"))
        .expect("csv row");
    assert!(line.ends_with(",fair,3.80,true"), "{line}");
}

#[tokio::test]
async fn recording_streams_with_ranges() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    finished_call(&app, "r-call", a, b, Some("2026/12/01/r-call.wav")).await;
    let file = app.recording_dir().join("2026/12/01/r-call.wav");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    let bytes = wav(1_000);
    let len = bytes.len();
    std::fs::write(&file, &bytes).expect("write wav");
    let url = "/api/telephony/calls/r-call/recording";

    // No Range: all of it.
    let r = get_range(&app, url, None, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("audio/wav"));
    assert_eq!(header_of(&r, header::ACCEPT_RANGES), Some("bytes"));
    assert_eq!(
        header_of(&r, header::CONTENT_LENGTH),
        Some(len.to_string().as_str())
    );
    assert_eq!(header_of(&r, header::CONTENT_RANGE), None);
    assert!(r.body == bytes, "the whole file, byte for byte");

    // (Range, first byte, last byte)
    let parts = [
        ("bytes=0-9", 0, 9),
        ("bytes=44-1043", 44, 1_043),
        ("bytes=4000-", 4_000, len - 1),
        ("bytes=-100", len - 100, len - 1),
        ("bytes=100-999999", 100, len - 1),
    ];
    for (range, first, last) in parts {
        let r = get_range(&app, url, Some(range), &admin).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}: {}", r.text);
        assert_eq!(
            header_of(&r, header::CONTENT_RANGE),
            Some(format!("bytes {first}-{last}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            header_of(&r, header::CONTENT_LENGTH),
            Some((last - first + 1).to_string().as_str())
        );
        assert_eq!(header_of(&r, header::CONTENT_TYPE), Some("audio/wav"));
        assert!(r.body == bytes[first..=last], "{range}: wrong bytes");
    }

    // Nothing selected: 416 with the length.
    for range in [format!("bytes={len}-"), "bytes=-0".into()] {
        let r = get_range(&app, url, Some(&range), &admin).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            header_of(&r, header::CONTENT_RANGE),
            Some(format!("bytes */{len}").as_str())
        );
        assert_eq!(r.json()["error"]["code"], "range_not_satisfiable");
    }
    // A range that is not one (last before first), or several: the whole.
    for range in ["bytes=9-0", "bytes=0-1,5-6", "pages=1-2"] {
        let r = get_range(&app, url, Some(range), &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert_eq!(r.body.len(), len);
    }

    // Audited once per listen (from byte 0), not per seek: the four
    // whole answers and `bytes=0-9`.
    let r = app
        .get("/api/audit?action=recording.listen&limit=100", &admin)
        .await;
    let audit = r.json();
    assert_eq!(audit["total"], 5, "{}", r.text);
    assert_eq!(audit["entries"][0]["targetId"], "r-call");
    assert_eq!(audit["entries"][0]["actorLogin"], "admin");
}

#[tokio::test]
async fn who_may_hear_a_recording() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    app.create_user(&admin, "Agent Three", "three", "agent")
        .await;
    app.create_user(&admin, "Super Visor", "super", "supervisor")
        .await;
    finished_call(&app, "s-call", a, b, Some("s-call.wav")).await;
    std::fs::create_dir_all(app.recording_dir()).expect("mkdir");
    std::fs::write(app.recording_dir().join("s-call.wav"), wav(10)).expect("write");
    let url = "/api/telephony/calls/s-call/recording";

    let one = app.login("one", "password-123").await;
    let two = app.login("two", "password-123").await;
    let three = app.login("three", "password-123").await;
    let sup = app.login("super", "password-123").await;
    // An API token (what scripts and integrations use) works as well.
    let r = app
        .post("/api/auth/tokens", json!({"name": "player"}), &admin)
        .await;
    let token = Auth::Bearer(r.json()["secret"].as_str().expect("secret").to_string());
    for (who, auth, want) in [
        ("API token", &token, StatusCode::OK),
        ("caller agent", &one, StatusCode::OK),
        ("callee agent", &two, StatusCode::OK),
        ("supervisor", &sup, StatusCode::OK),
        ("admin", &admin, StatusCode::OK),
        ("another agent", &three, StatusCode::NOT_FOUND),
        ("nobody", &Auth::None, StatusCode::UNAUTHORIZED),
    ] {
        let r = get_range(&app, url, None, auth).await;
        assert_eq!(r.status, want, "{who}: {}", r.text);
        if want == StatusCode::NOT_FOUND {
            // The same answer as for a call that does not exist.
            assert_eq!(r.json()["error"]["code"], "call_not_found", "{who}");
            assert!(!r.text.contains("RIFF"));
        }
    }
    let r = get_range(&app, "/api/telephony/calls/nope/recording", None, &admin).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("call_not_found"))
    );
}

#[tokio::test]
async fn no_recording_missing_files_and_paths_outside_the_directory() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    std::fs::create_dir_all(app.recording_dir().join("sub")).expect("mkdir");
    // Files an escaping path could reach: next to the recording directory,
    // and the database itself (SQLite runs keep it in the same temp dir).
    let outside = app.dir.path().join("secret.wav");
    std::fs::write(&outside, wav(10)).expect("write");
    let cases = [
        ("none", None),
        ("missing", Some("missing.wav")),
        ("dir", Some("sub")),
        ("dotdot", Some("../secret.wav")),
        ("dotdot-deep", Some("sub/../../secret.wav")),
        ("absolute", Some(outside.to_str().expect("utf-8 path"))),
        ("db", Some("../test.db")),
    ];
    for (id, path) in cases {
        finished_call(&app, id, a, b, path).await;
        let r = get_range(
            &app,
            &format!("/api/telephony/calls/{id}/recording"),
            None,
            &admin,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "recording_not_found", "{id}");
        assert!(!r.text.contains("RIFF"), "{id}: served a file");
    }
    // The same file, inside the directory, is served: the refusals above
    // are about the path, not the file.
    std::fs::copy(&outside, app.recording_dir().join("inside.wav")).expect("copy");
    finished_call(&app, "inside", a, b, Some("inside.wav")).await;
    let r = get_range(&app, "/api/telephony/calls/inside/recording", None, &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    // Nothing refused was audited as a listen.
    let r = app
        .get("/api/audit?action=recording.listen&limit=100", &admin)
        .await;
    assert_eq!(r.json()["total"], 1, "{}", r.text);
}

#[tokio::test]
async fn agents_record_calls_override() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    app.create_user(&admin, "Super Visor", "super", "supervisor")
        .await;
    let url = format!("/api/agents/{a}");
    let r = app.get(&url, &admin).await;
    assert_eq!(r.json()["agent"]["recordCalls"], json!(null), "default");

    let patch = |body| app.call(Method::PATCH, &url, Some(body), &admin);
    let r = patch(json!({"recordCalls": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["agent"]["recordCalls"], true);
    // Another field alone leaves it as it is.
    let r = patch(json!({"name": "Agent Uno"})).await;
    assert_eq!(r.json()["agent"]["recordCalls"], true);
    let r = patch(json!({"recordCalls": false})).await;
    assert_eq!(r.json()["agent"]["recordCalls"], false);
    assert_eq!(
        app.get(&url, &admin).await.json()["agent"]["recordCalls"],
        false
    );
    // null: back to the system default.
    let r = patch(json!({"recordCalls": null})).await;
    assert_eq!(r.json()["agent"]["recordCalls"], json!(null));
    let list = app.get("/api/agents?limit=500", &admin).await.json();
    let me = list["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|u| u["id"] == a)
        .cloned()
        .expect("listed");
    assert!(me.as_object().expect("object").contains_key("recordCalls"));

    // Not a boolean: refused, nothing changed.
    for bad in [json!("yes"), json!(1), json!({})] {
        let r = patch(json!({ "recordCalls": bad })).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
    }
    assert_eq!(
        app.get(&url, &admin).await.json()["agent"]["recordCalls"],
        json!(null)
    );
    // Admins only.
    let sup = app.login("super", "password-123").await;
    let r = app
        .call(
            Method::PATCH,
            &url,
            Some(json!({"recordCalls": true})),
            &sup,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Audited with the value.
    let r = app
        .get("/api/audit?action=user.update&limit=100", &admin)
        .await;
    let values: Vec<_> = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["details"]["fields"] == json!(["recordCalls"]))
        .map(|e| e["details"]["recordCalls"].clone())
        .collect();
    // Newest first.
    assert_eq!(values, [json!(null), json!(false), json!(true)]);
}
