//! CDR endpoints over rows the recorder wrote from call events.

use axum::http::{header, StatusCode};
use chrono::{Duration, Utc};
use domain::{Direction, HangupCause};

use crate::common::*;

#[tokio::test]
async fn calls_active_history_stats_and_csv() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    let t0 = Utc::now() - Duration::hours(1);
    let s = Duration::seconds;
    app.record_call(
        "c1",
        ("1000", Some(a)),
        ("=1001", Some(b)),
        t0,
        Some(s(5)),
        Some((s(65), HangupCause::CallerBye)),
    )
    .await;
    app.record_call(
        "c2",
        ("1000", Some(b)),
        ("=1001", None),
        t0,
        None,
        Some((s(20), HangupCause::Busy)),
    )
    .await;
    app.record_call("c3", ("1000", Some(b)), ("=1001", None), t0, None, None)
        .await;

    let r = app.get("/api/telephony/calls/active", &admin).await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["calls"][0]["callId"], "c3");
    assert_eq!(r.json()["calls"][0]["state"], "ringing");
    assert_eq!(r.json()["calls"][0]["agent"]["name"], "Agent Two");

    let r = app.get("/api/telephony/calls/history", &admin).await;
    assert_eq!(r.json()["total"], 3);
    assert_eq!(r.json()["count"], 3);
    let r = app
        .get("/api/telephony/calls/history?order=duration", &admin)
        .await;
    let durations: Vec<i64> = r.json()["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["duration"].as_i64())
        .collect();
    assert_eq!(durations, [0, 20, 65]);
    let r = app
        .get(
            "/api/telephony/calls/history?order=-duration&limit=1",
            &admin,
        )
        .await;
    assert_eq!(r.json()["calls"][0]["callId"], "c1");
    assert_eq!(
        app.get("/api/telephony/calls/history?order=secret", &admin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = app
        .get("/api/telephony/calls/history?disposition=BUSY", &admin)
        .await;
    assert_eq!(r.json()["total"], 1);
    assert_eq!(r.json()["calls"][0]["callId"], "c2");
    let r = app
        .get(&format!("/api/telephony/calls/history?agentId={a}"), &admin)
        .await;
    assert_eq!(r.json()["total"], 1);
    let c1 = &r.json()["calls"][0];
    assert_eq!(
        (c1["duration"].as_i64(), c1["billsec"].as_i64()),
        (Some(65), Some(60))
    );
    assert_eq!(c1["disposition"], "ANSWERED");
    assert_eq!(c1["hangupCause"], "caller_bye");
    let future = (Utc::now() + Duration::days(2)).format("%Y-%m-%d");
    let r = app
        .get(
            &format!("/api/telephony/calls/history?from={future}"),
            &admin,
        )
        .await;
    assert_eq!(r.json()["total"], 0);
    assert_eq!(
        app.get("/api/telephony/calls/history?from=yesterday", &admin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/telephony/calls/history?disposition=MAYBE", &admin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/telephony/calls/history?format=xml", &admin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // an agent sees only calls they took part in
    let one = app.login("one", "password-123").await;
    let r = app.get("/api/telephony/calls/history", &one).await;
    assert_eq!(r.json()["total"], 1);
    let r = app
        .get(&format!("/api/telephony/calls/history?agentId={b}"), &one)
        .await;
    assert_eq!(r.json()["total"], 1, "agentId is ignored for agents");
    assert_eq!(
        app.get("/api/telephony/calls/active", &one).await.json()["count"],
        0
    );

    let r = app.get("/api/telephony/calls/stats", &admin).await;
    let s = &r.json()["stats"];
    assert_eq!(
        (
            s["totalCalls"].as_i64(),
            s["answered"].as_i64(),
            s["busy"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(s["answerRate"], "50.00");
    assert_eq!(s["totalBillsec"], 60);
    let today = Utc::now().format("%Y-%m-%d");
    let r = app
        .get(
            &format!("/api/telephony/calls/stats?startDate={today}&endDate={today}"),
            &admin,
        )
        .await;
    assert!(r.json()["stats"]["totalCalls"].as_i64().is_some());

    let r = app
        .get("/api/telephony/calls/history?format=csv", &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/csv")));
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("id,callId,direction"));
    assert!(
        r.text.contains("\"'=1001\""),
        "formula injection neutralised: {}",
        r.text
    );

    let r = app.get("/api/telephony/status", &admin).await;
    let st = &r.json()["status"];
    assert_eq!(
        (st["activeCalls"].as_i64(), st["callsInProgress"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(st["connected"], false);
    assert_eq!(st["mode"], "builtin");
}

/// `GET /api/telephony/calls/{callId}`: the call and its legs, written by
/// the recorder from call events; agents see only calls they took part in.
#[tokio::test]
async fn one_call_with_its_legs() {
    use domain::{CallEvent, CallEventKind as K, HangupCause, Party};
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (a, _) = app.create_user(&admin, "Agent One", "one", "agent").await;
    let (b, _) = app.create_user(&admin, "Agent Two", "two", "agent").await;
    app.create_user(&admin, "Agent Three", "three", "agent")
        .await;
    let t0 = (Utc::now() - Duration::minutes(5)).timestamp_millis() as u64;
    let ev = |dt: u64, kind| CallEvent {
        call_id: "leg-call".into(),
        at_ms: t0 + dt,
        kind,
    };
    let party = |number: &str, id| Party {
        number: number.into(),
        agent_id: Some(id),
    };
    app.services
        .calls
        .record(&[
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
                2,
                K::LegAdded {
                    leg: 1,
                    party: party("1001", b),
                    transport: "udp".into(),
                },
            ),
            ev(
                2,
                K::LegAdded {
                    leg: 2,
                    party: party("1001", b),
                    transport: "tcp".into(),
                },
            ),
            ev(
                50,
                K::LegEnded {
                    leg: 2,
                    cause: HangupCause::Busy,
                    sip_code: Some(486),
                },
            ),
            ev(100, K::Ringing { leg: 1 }),
            ev(1_000, K::Answered { leg: 1 }),
            ev(
                61_000,
                K::Ended {
                    cause: HangupCause::CallerBye,
                },
            ),
        ])
        .await
        .expect("record");

    let r = app.get("/api/telephony/calls/leg-call", &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let j = r.json();
    assert_eq!(j["call"]["callId"], "leg-call");
    assert_eq!(
        (
            j["call"]["billsec"].as_i64(),
            j["call"]["disposition"].as_str()
        ),
        (Some(60), Some("ANSWERED"))
    );
    let legs = j["legs"].as_array().expect("legs");
    let view: Vec<String> = legs
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {} {} {} {}",
                l["leg"],
                l["number"],
                l["agentId"],
                l["transport"],
                l["endCause"],
                l["sipCode"],
                l["answeredAt"].is_string()
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            format!("0 \"1000\" {a} \"ws\" \"caller_bye\" null true"),
            format!("1 \"1001\" {b} \"udp\" \"caller_bye\" null true"),
            format!("2 \"1001\" {b} \"tcp\" \"busy\" 486 false"),
        ]
    );
    let leg1 = &legs[1];
    for field in ["createdAt", "ringingAt", "answeredAt", "endedAt"] {
        assert!(leg1[field].is_string(), "{field}: {leg1}");
    }

    // The callee agent sees it; an agent with no part in it does not.
    let two = app.login("two", "password-123").await;
    assert_eq!(
        app.get("/api/telephony/calls/leg-call", &two).await.status,
        StatusCode::OK
    );
    let three = app.login("three", "password-123").await;
    let r = app.get("/api/telephony/calls/leg-call", &three).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "call_not_found");
    let r = app.get("/api/telephony/calls/nope", &admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/telephony/calls/leg-call", &Auth::None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
