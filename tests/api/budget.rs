//! The memory budget holds in aggregate: many HTTP/2 streams whose large bodies
//! arrive slowly get room up to the limit the budget sets, the rest 503 with
//! `Retry-After`, and the server's resident memory stays under the budget
//! throughout. Without the limit these streams would hold twice the budget.

use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client;
use http::Request;
use tokio::net::TcpStream;

use crate::helpers::TestServer;

const BUDGET_MIB: u64 = 64;
const BODY: usize = 256 * 1024 - 1;
const CONNECTIONS: usize = 8;
const STREAMS: usize = 64;

/// A JSON body of exactly `BODY` bytes.
fn body() -> Vec<u8> {
    let head = br#"{"name":"x","pad":""#;
    let tail = br#""}"#;
    let mut out = head.to_vec();
    out.resize(BODY - tail.len(), b'a');
    out.extend_from_slice(tail);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_http2_bodies_stay_within_the_memory_budget() {
    let app = TestServer::spawn_with(&[
        ("MEMORY_BUDGET", "64MiB"),
        ("MAX_BODY_BYTES", "262144"),
        ("HEADER_TIMEOUT", "60s"),
        ("WORKERS", "1"),
    ]);
    let body = Bytes::from(body());
    let mut peak = app.rss_kib() / 1024.0;

    // Every stream sends all of its body but the last byte, then waits.
    let mut pending = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = TcpStream::connect(app.addr).await.unwrap();
        let (send, conn) = client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        for _ in 0..STREAMS {
            let mut send = send.clone().ready().await.unwrap();
            let req = Request::post("http://localhost/greet")
                .header("content-length", BODY.to_string())
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let (response, mut stream) = send.send_request(req, false).unwrap();
            // h2 sends it as the server's windows open; a refused stream's data
            // is dropped with the stream.
            let _ = stream.send_data(body.slice(..BODY - 1), false);
            pending.push((response, stream));
        }
        peak = peak.max(app.rss_kib() / 1024.0);
    }

    // Let every byte the streams may send arrive, measuring as it does.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        peak = peak.max(app.rss_kib() / 1024.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        peak < BUDGET_MIB as f64,
        "resident memory reached {peak:.1} MiB, over the {BUDGET_MIB} MiB budget"
    );

    // Refused streams have been answered; the others wait for their last byte.
    let (mut refused, mut waiting) = (0, Vec::new());
    for (mut response, stream) in pending {
        match futures_util::FutureExt::now_or_never(&mut response) {
            Some(Ok(r)) => {
                assert_eq!(r.status(), 503, "{r:?}");
                assert_eq!(r.headers()["retry-after"], "1");
                refused += 1;
            }
            Some(Err(e)) => panic!("stream failed: {e}"),
            None => waiting.push((response, stream)),
        }
    }
    let held = waiting.len();
    assert!(refused > 0, "nothing refused: the limit did not apply");
    assert!(held > 0, "nothing held");
    assert_eq!(refused + held, CONNECTIONS * STREAMS);

    // The held ones complete normally once their last byte arrives.
    for (response, mut stream) in waiting {
        stream.send_data(body.slice(BODY - 1..), true).unwrap();
        let r = response.await.unwrap();
        assert_eq!(r.status(), 200);
        let mut data = r.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = data.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(text, br#"{"message":"Hello, x!"}"#);
    }
    eprintln!("{held} held, {refused} refused (503), peak RSS {peak:.1} MiB");
}
