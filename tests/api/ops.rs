//! Operations and protection: metrics, access log, trace context, TLS, connection
//! cap, deadlines under load, and robustness against malformed input.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::helpers::{run_to_exit, Conn, Raw, RawResponse, TestServer};

/// Parses `name{labels} value` lines of the exposition into a lookup.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(c: &mut Conn) -> String {
    let r = c.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().to_owned()
}

#[tokio::test]
async fn metrics_move_by_exactly_the_requests_sent() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let before = scrape(&mut c).await;
    for _ in 0..7 {
        assert_eq!(c.greet(r#"{"name":"A"}"#).await.status, 200);
    }
    for _ in 0..3 {
        c.greet("{}").await.assert_problem(400);
    }
    c.get("/greet").await.assert_problem(405);
    let after = scrape(&mut c).await;
    let ok = r#"http_requests_total{route="/greet",method="POST",status="200"}"#;
    let bad = r#"http_requests_total{route="/greet",method="POST",status="400"}"#;
    let wrong = r#"http_requests_total{route="/greet",method="GET",status="405"}"#;
    let delta = |s: &str| metric(&after, s).unwrap_or(0.0) - metric(&before, s).unwrap_or(0.0);
    assert_eq!(delta(ok), 7.0, "{after}");
    assert_eq!(delta(bad), 3.0);
    assert_eq!(delta(wrong), 1.0);
    let count = r#"http_request_duration_seconds_count{route="/greet"}"#;
    assert_eq!(delta(count), 11.0);
    // The first scrape itself is counted by the second.
    let scrapes = r#"http_requests_total{route="/metrics",method="GET",status="200"}"#;
    assert_eq!(metric(&after, scrapes), Some(1.0));
    assert_eq!(metric(&after, "http_connections_open"), Some(1.0));
    assert!(metric(&after, "http_connections_total").unwrap() >= 1.0);
    // The process metrics agree with what /proc says about the process.
    let proc_stat = std::fs::read_to_string(format!("/proc/{}/stat", app.pid())).unwrap();
    let fields: Vec<&str> = proc_stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let cpu = metric(&after, "process_cpu_seconds_total").unwrap();
    // The clock tick is 1/100 s on Linux; allow the work done in between.
    assert!(
        (cpu - ticks / 100.0).abs() <= 0.05,
        "{cpu} vs {ticks} ticks"
    );
    let rss = metric(&after, "process_resident_memory_bytes").unwrap();
    let vm_rss_kib = app.rss_kib();
    assert!(
        (rss / 1024.0 / vm_rss_kib - 1.0).abs() < 0.2,
        "{rss} vs {vm_rss_kib} KiB"
    );
    let fds = std::fs::read_dir(format!("/proc/{}/fd", app.pid()))
        .unwrap()
        .count();
    let open_fds = metric(&after, "process_open_fds").unwrap();
    assert!((open_fds - fds as f64).abs() <= 2.0, "{open_fds} vs {fds}");
    let start = metric(&after, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= now && start > now - 600.0, "{start} vs {now}");
    // Buckets from 1 µs: a greeting takes a few.
    assert!(after.contains(r#"http_request_duration_seconds_bucket{route="/greet",le="1e-06"}"#));
    assert!(after.contains(r#"http_request_duration_seconds_bucket{route="/greet",le="2.5e-06"}"#));
    assert!(after.contains(r#"http_request_duration_seconds_bucket{route="/greet",le="10"}"#));
}

#[tokio::test]
async fn unknown_paths_share_one_label() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    for i in 0..100 {
        c.get(&format!("/random/{i}/{}", i * 7919))
            .await
            .assert_problem(404);
    }
    let text = scrape(&mut c).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .collect();
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        Some(100.0)
    );
    assert!(!text.contains("/random/"));
    assert!(series.len() <= 2, "{series:?}");
}

#[tokio::test]
async fn access_log_has_one_structured_line_per_request_with_trace_id() {
    let app = TestServer::spawn_with(&[("ACCESS_LOG", "true")]);
    let mut c = Conn::h1(app.addr).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let req = http::Request::post("/greet")
        .header("host", "x")
        .header("x-request-id", "req-42")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(Full::new(Bytes::from_static(br#"{"name":"T"}"#)))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 200);
    // The response carries a child span of the caller's trace.
    let tp = r.header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    assert_ne!(&tp[36..52], "00f067aa0ba902b7");

    let line = app.wait_for_log("req-42");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["message"], "request");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/greet");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], br#"{"message":"Hello, T!"}"#.len());
    assert_eq!(v["trace_id"], trace);
    // The span id of our hop, the one the response's traceparent names.
    assert_eq!(v["span_id"], &tp[36..52]);
    assert_eq!(v["version"], "HTTP/1.1");
    assert!(v["duration_us"].as_u64().is_some());
    assert!(v["peer"].as_str().unwrap().starts_with("127.0.0.1:"));

    // One line per request, including errors.
    c.get("/nope").await.assert_problem(404);
    let line = app.wait_for_log(r#""path":"/nope""#);
    assert!(line.contains(r#""status":404"#));
    let count = app
        .logs()
        .iter()
        .filter(|l| l.contains(r#""message":"request""#))
        .count();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn no_access_log_by_default_and_invalid_traceparent_is_ignored() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let req = http::Request::get("/healthz")
        .header("host", "x")
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 200);
    assert!(r.header("traceparent").is_none());
    assert!(!app
        .logs()
        .iter()
        .any(|l| l.contains(r#""message":"request""#)));
}

/// A self-signed certificate for `localhost`, made at test time.
pub fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.cert.der().to_vec())
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("greeting-service-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn tls_connect(
    addr: std::net::SocketAddr,
    der: &[u8],
    alpn: &[&[u8]],
    version: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The server's `http_connections_open`, read over a connection of its own
/// (HTTPS when `tls` holds the certificate), which the gauge counts too.
pub fn open_connections(app: &TestServer, tls: Option<&[u8]>) -> f64 {
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let bytes = match tls {
        None => app.raw().send(request).read_to_close().0,
        Some(der) => tokio::runtime::Runtime::new().unwrap().block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tls_connect(app.addr, der, &[b"http/1.1"], &rustls::version::TLS13).await;
            s.write_all(request).await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        }),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    metric(&text, "http_connections_open").unwrap_or_else(|| panic!("{text}"))
}

/// Waits until `n` connections besides the asking one are open on the server.
pub fn wait_for_open_connections(app: &TestServer, n: usize, tls: Option<&[u8]>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while open_connections(app, tls) < (n + 1) as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} connections never opened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn https_with_alpn_for_both_protocols_and_both_tls_versions() {
    let dir = temp_dir("tls");
    let (cert, key, der) = certificate(&dir);
    let app = TestServer::spawn_with(&[
        ("TLS_CERT", cert.to_str().unwrap()),
        ("TLS_KEY", key.to_str().unwrap()),
    ]);
    let greet = || {
        http::Request::post("https://localhost/greet")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"name":"TLS"}"#)))
            .unwrap()
    };
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // h2 by ALPN.
        let tls = tls_connect(app.addr, &der, &[b"h2", b"http/1.1"], version).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let r = send.send_request(greet()).await.unwrap();
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert_eq!(r.status(), 200);

        // HTTP/1.1 by ALPN.
        let tls = tls_connect(app.addr, &der, &[b"http/1.1"], version).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let r = send.send_request(greet()).await.unwrap();
        assert_eq!(r.version(), http::Version::HTTP_11);
        assert_eq!(r.status(), 200);
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], br#"{"message":"Hello, TLS!"}"#);
    }
    // Plain HTTP on the TLS port is refused, not served.
    let mut raw = app.raw();
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (bytes, _) = raw.read_to_close();
    assert!(!bytes.starts_with(b"HTTP/1.1 200"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_tls_files_exit_2() {
    let dir = temp_dir("badtls");
    let (cert, key, _) = certificate(&dir);
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a pem file").unwrap();
    for (c, k, named) in [
        (junk.clone(), key.clone(), "TLS_CERT"),
        (cert.clone(), junk.clone(), "TLS_KEY"),
        (key.clone(), cert.clone(), "TLS_"),
    ] {
        let out = run_to_exit(
            &[],
            &[
                ("TLS_CERT", c.to_str().unwrap()),
                ("TLS_KEY", k.to_str().unwrap()),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(named), "{}", out.stderr);
    }
    let out = run_to_exit(&[], &[("TLS_CERT", cert.to_str().unwrap())]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "TLS_CERT without TLS_KEY: {}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn healthz_on(raw: &mut Raw) -> u16 {
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    raw.read_responses(1)[0].status
}

/// The server's view of its connections, asked over an already open one.
fn connection_gauges(raw: &mut Raw) -> (f64, f64) {
    raw.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = String::from_utf8(raw.read_responses(1).remove(0).body).unwrap();
    (
        metric(&text, "http_connections_open").unwrap(),
        metric(&text, "http_connections_total").unwrap(),
    )
}

#[test]
fn connection_cap_stops_accepting_then_serves_again() {
    for workers in ["1", "2"] {
        // The cap is for the process, whatever the number of workers.
        let app = TestServer::spawn_with(&[("MAX_CONNECTIONS", "20"), ("WORKERS", workers)]);
        let mut held: Vec<Raw> = (0..20).map(|_| app.raw()).collect();
        for raw in held.iter_mut() {
            assert_eq!(healthz_on(raw), 200);
        }
        // One more: the kernel completes the handshake, the server holds it unserved
        // and says so.
        let mut waiting = app.raw();
        waiting.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        app.wait_for_log("connection limit reached");
        // The server's own count: 20 open, none taken in beyond them.
        assert_eq!(connection_gauges(&mut held[0]), (20.0, 20.0));
        // Close one: the waiting connection is served.
        held.truncate(19);
        assert_eq!(waiting.read_responses(1)[0].status, 200);
        let (open, total) = connection_gauges(&mut waiting);
        assert_eq!((open, total), (20.0, 21.0));
    }
}

#[test]
fn a_thousand_concurrent_keep_alive_connections_are_all_served() {
    let _ = rlimit::increase_nofile_limit(4096);
    let app = TestServer::spawn();
    let mut conns: Vec<Raw> = (0..1000).map(|_| app.raw()).collect();
    for raw in conns.iter_mut() {
        raw.send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"name\":\"K\"}");
    }
    for raw in conns.iter_mut() {
        let r = raw.read_responses(1);
        assert_eq!(r[0].status, 200);
    }
    // All still open and usable.
    for raw in conns.iter_mut().step_by(50) {
        assert_eq!(healthz_on(raw), 200);
    }
}

#[test]
fn accept_errors_like_emfile_are_logged_and_survived() {
    // A tiny fd limit (soft and hard, so the server cannot raise it) makes accept
    // fail with EMFILE once the table is full.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n 48 && exec {}", crate::helpers::BIN));
    let mut app = TestServer::spawn_command(cmd, &[("WORKERS", "1")]);
    let flood: Vec<Raw> = (0..100).map(|_| app.raw()).collect();
    app.wait_for_log("accept failed");
    drop(flood);
    // Back to normal once descriptors are free again: the back-off ends with a
    // retried accept, which the next connection sees served.
    let mut raw = app.raw();
    assert_eq!(healthz_on(&mut raw), 200);
    assert!(app.is_running(), "the server must not exit");
}

/// A tiny deterministic generator, so a failure can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn malformed_request(rng: &mut Lcg) -> Vec<u8> {
    let body: Vec<u8> = match rng.below(8) {
        0 => {
            let n = rng.below(64) as usize;
            rng.bytes(n)
        }
        1 => {
            let depth = 1 + rng.below(3000) as usize;
            let mut v = "[".repeat(depth).into_bytes();
            v.extend("]".repeat(depth).bytes());
            v
        }
        2 => {
            let depth = 1 + rng.below(3000) as usize;
            let mut v = r#"{"name":"#.repeat(depth).into_bytes();
            v.extend(b"1");
            v.extend("}".repeat(depth).bytes());
            v
        }
        3 => b"{\"name\":\"\xc3\x28\xff\"}".to_vec(),
        4 => br#"{"name":"\ud800"}"#.to_vec(),
        5 => {
            let mut v = br#"{"name":"John"}"#.to_vec();
            let at = rng.below(v.len() as u64) as usize;
            v[at] = rng.next() as u8;
            v
        }
        6 => br#"{"name":1e999999,"x":-0.0e-99999}"#.to_vec(),
        _ => br#"{"name":"ok"}"#.to_vec(),
    };
    match rng.below(10) {
        0 => {
            let n = 1 + rng.below(200) as usize;
            let mut r = rng.bytes(n);
            r.extend(b"\r\n\r\n");
            r
        }
        1 => {
            let mut r =
                b"POST /greet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend(format!("{:x}\r\n", body.len() + rng.below(5) as usize).bytes());
            r.extend(&body);
            r.extend(if rng.below(2) == 0 {
                &b"\r\nzz\r\n\r\n"[..]
            } else {
                &b"\r\n0\r\n\r\n"[..]
            });
            r
        }
        2 => {
            let mut r = format!(
                "POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len() + 3
            )
            .into_bytes();
            r.extend(&body);
            r
        }
        3 => {
            let method = ["GET", "PUT", "BREW", "P0ST", "", "POST POST"][rng.below(6) as usize];
            format!("{method} /greet HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
        }
        4 => b"POST /greet HTTP/9.9\r\n\r\n".to_vec(),
        5 => {
            let mut r = b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: ".to_vec();
            r.extend(rng.bytes(8).into_iter().map(|b| b'a' + b % 26));
            r.extend(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).bytes());
            r.extend(&body);
            r
        }
        6 => {
            let path: Vec<u8> = rng.bytes(20).into_iter().map(|b| 0x21 + b % 94).collect();
            let mut r = b"GET /".to_vec();
            r.extend(path);
            r.extend(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            r
        }
        _ => {
            let mut r = format!("POST /greet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend(&body);
            r
        }
    }
}

#[test]
fn thousands_of_seeded_malformed_requests_never_get_a_5xx_or_crash() {
    let seed = std::env::var("ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut app = TestServer::spawn_with(&[("HEADER_TIMEOUT", "200ms")]);
    let mut rng = Lcg(seed);
    for i in 0..3000 {
        let req = malformed_request(&mut rng);
        let mut raw = app.raw();
        raw.0
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = raw.0.write_all(&req);
        let _ = raw.0.shutdown(std::net::Shutdown::Write);
        let (bytes, _) = raw.read_to_close();
        for r in RawResponse::parse_all(&bytes) {
            assert!(
                r.status < 500,
                "seed {seed} request {i}: {} for {:?}",
                r.status_line,
                String::from_utf8_lossy(&req)
            );
        }
    }
    assert!(app.is_running(), "the process must still run");
    let mut raw = app.raw();
    assert_eq!(healthz_on(&mut raw), 200);
}
