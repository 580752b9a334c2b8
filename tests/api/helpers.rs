//! Starting the real binary and talking to it over loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const BIN: &str = env!("CARGO_BIN_EXE_greeting-service");

/// A running `greeting-service` on a free loopback port (`PORT=0`: the port is read
/// from its "listening" log line, so no two tests can race for one); killed on drop.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Logs>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The server's stdout, line by line, with a condition variable to wait on.
#[derive(Default)]
struct Logs {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl TestServer {
    pub fn spawn() -> Self {
        Self::spawn_with(&[])
    }

    /// Starts the binary with `PORT=0` plus `env`, and waits for its "listening" log
    /// line to learn the port.
    pub fn spawn_with(env: &[(&str, &str)]) -> Self {
        Self::spawn_args(&[], env)
    }

    /// Like [`TestServer::spawn_with`], with command-line flags too.
    pub fn spawn_args(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Self::spawn_command(cmd, env)
    }

    /// Runs `cmd` (the binary, or a shell that execs it) with a clean environment:
    /// `PORT=0`, `HOST=127.0.0.1`, `WORKERS=2`, then `env`.
    pub fn spawn_command(mut cmd: Command, env: &[(&str, &str)]) -> Self {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start greeting-service");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Logs::default());
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lines.lock().unwrap().0.push(line);
                sink.changed.notify_all();
            }
            sink.lines.lock().unwrap().1 = true;
            sink.changed.notify_all();
        });
        let mut server = Self {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            logs,
            reader: Some(reader),
        };
        let line = server.wait_for_log("listening");
        server.addr = listening_addr(&line)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        server
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lines.lock().unwrap().0.clone()
    }

    /// Waits until a log line contains `needle` (or fails after 20 s) and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut guard = self.logs.lines.lock().unwrap();
        loop {
            if let Some(line) = guard.0.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !guard.1,
                "no log line with {needle:?}: {:#?}",
                guard.0
            );
            guard = self
                .logs
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap()
                .0;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, from `/proc` (VmRSS), in KiB.
    pub fn rss_kib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Sends `TERM` or `INT` to the server (a system call, not the `kill` command,
    /// which a minimal system may lack).
    pub fn signal(&self, sig: &str) {
        use rustix::process::{kill_process, Pid, Signal};
        let sig = match sig {
            "TERM" => Signal::TERM,
            "INT" => Signal::INT,
            other => panic!("no signal {other} in the tests"),
        };
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .expect("a child's pid");
        kill_process(pid, sig).expect("signal the server");
    }

    /// Waits for the process to exit (fails after `limit`), then for the last of
    /// its output.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        status
    }

    /// True while the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The last log line, parsed (after [`TestServer::wait_exit`]).
    pub fn last_log(&self) -> serde_json::Value {
        let last = self.logs().last().cloned().expect("no log lines");
        serde_json::from_str(&last).unwrap_or_else(|_| panic!("not JSON: {last}"))
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }
}

/// The bound address from a "listening" line, JSON (`"addr":"..."`) or text
/// (`addr=...`).
fn listening_addr(line: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["addr"].as_str().map(str::to_owned);
    }
    let at = line.find("addr=")? + "addr=".len();
    line[at..].split_whitespace().next().map(str::to_owned)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of running the binary to completion.
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
    pub stdout: String,
}

/// Runs the binary with `args` and `env` until it exits (for configuration errors).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> Exited {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} {env:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Exited {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// A raw TCP connection for protocol edge cases.
pub struct Raw(pub TcpStream);

impl Raw {
    pub fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Self(s)
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.write_all(bytes).unwrap();
        self
    }

    /// Reads until the server closes the connection (or the read timeout).
    pub fn read_to_close(&mut self) -> (Vec<u8>, bool) {
        let (out, end) = self.read_until_end();
        let closed = match end {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        (out, closed)
    }

    /// Reads until the server's orderly close: `read` returning 0, the FIN. A reset
    /// (the server closed with bytes of ours unread) or the read timeout fails.
    pub fn read_to_fin(&mut self) -> Vec<u8> {
        let (out, end) = self.read_until_end();
        if let Err(e) = end {
            panic!("no orderly close after {} bytes: {e}", out.len());
        }
        out
    }

    /// Everything read until `read` returns 0 (`Ok`) or fails (the error).
    fn read_until_end(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// Reads exactly `n` HTTP/1 responses with `Content-Length` bodies.
    pub fn read_responses(&mut self, n: usize) -> Vec<RawResponse> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut chunk = [0u8; 65536];
        while out.len() < n {
            if let Some((resp, used)) = RawResponse::parse(&buf) {
                out.push(resp);
                buf.drain(..used);
                continue;
            }
            let read = self.0.read(&mut chunk).expect("read response");
            assert!(read > 0, "connection closed after {} responses", out.len());
            buf.extend_from_slice(&chunk[..read]);
        }
        assert!(buf.is_empty(), "extra bytes after responses");
        out
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses one response from the front of `buf`, if complete.
    pub fn parse(buf: &[u8]) -> Option<(Self, usize)> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let total = end + 4 + len;
        if buf.len() < total {
            return None;
        }
        Some((
            Self {
                status_line,
                status,
                headers,
                body: buf[end + 4..total].to_vec(),
            },
            total,
        ))
    }

    /// All responses in `buf`, which must end on a response boundary.
    pub fn parse_all(mut buf: &[u8]) -> Vec<Self> {
        let mut out = Vec::new();
        while let Some((r, used)) = Self::parse(buf) {
            out.push(r);
            buf = &buf[used..];
        }
        out
    }
}

/// A response read through hyper's client.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts an RFC 9457 problem response with this status.
    pub fn assert_problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
        let v = self.json();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], status);
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(v["detail"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
        v
    }
}

/// One HTTP/1.1 or h2c connection through hyper's client, reused for many requests.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    pub async fn h1(addr: SocketAddr) -> Self {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Self::H1(send)
    }

    pub async fn h2(addr: SocketAddr) -> Self {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        Self::H2(send)
    }

    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Reply {
        let resp = match self {
            Self::H1(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Self::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        };
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            version: parts.version,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn post(&mut self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut req = http::Request::post(path).header("host", "localhost");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
    }

    pub async fn greet(&mut self, body: &str) -> Reply {
        self.post("/greet", Some("application/json"), body.as_bytes())
            .await
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path).await
    }

    pub async fn request(&mut self, method: &str, path: &str) -> Reply {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }
}

/// Sends a request head that asks for `100 Continue` and waits for it: hyper sends
/// it when the handler starts reading the body, so the request is then in flight
/// (no sleep needed to be sure of it).
pub fn start_request_in_flight(raw: &mut Raw, body_len: usize) {
    raw.send(
        format!(
            "POST /greet HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {body_len}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(raw.read_responses(1)[0].status, 100);
}

/// A JSON body with `name` set to `name`, encoded by serde_json.
pub fn body_with_name(name: &str) -> String {
    serde_json::json!({ "name": name }).to_string()
}
