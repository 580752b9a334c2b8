//! Both serving modes (`RUNTIME=per-core`, the default, and `multi-thread`) serve the
//! same contract and shut down the same way.

use std::time::Duration;

use crate::helpers::{start_request_in_flight, Conn, TestServer};

fn scenario(runtime: &str, workers: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut app = TestServer::spawn_with(&[("RUNTIME", runtime), ("WORKERS", workers)]);
    let line = app.wait_for_log("\"listening\"");
    assert!(line.contains(&format!(r#""workers":{workers}"#)), "{line}");
    rt.block_on(async {
        // Enough connections that every listener gets some.
        for _ in 0..8 {
            let mut h1 = Conn::h1(app.addr).await;
            assert_eq!(
                h1.greet(r#"{"name":"A"}"#).await.text(),
                r#"{"message":"Hello, A!"}"#
            );
            let mut h2 = Conn::h2(app.addr).await;
            assert_eq!(
                h2.greet(r#"{"name":"B"}"#).await.text(),
                r#"{"message":"Hello, B!"}"#
            );
        }
    });
    let mut raw = app.raw();
    start_request_in_flight(&mut raw, 12);
    app.signal("TERM");
    app.wait_for_log("shutdown started");
    raw.send(br#"{"name":"C"}"#);
    assert_eq!(raw.read_responses(1)[0].body, br#"{"message":"Hello, C!"}"#);
    assert_eq!(app.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn per_core_with_several_workers() {
    scenario("per-core", "3");
}

#[test]
fn multi_thread_with_several_workers() {
    scenario("multi-thread", "3");
}

#[test]
fn bad_runtime_value_exits_2() {
    let out = crate::helpers::run_to_exit(&[], &[("RUNTIME", "fibers")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("RUNTIME") && out.stderr.contains("fibers"));
}
