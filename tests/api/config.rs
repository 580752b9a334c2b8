//! README, Configuration: flags and variables.

use crate::helpers::{run_to_exit, TestServer};

#[test]
fn bad_values_exit_2_with_one_line_naming_setting_and_value() {
    for (var, value) in [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("HOST", "not-an-ip"),
        ("WORKERS", "0"),
        ("WORKERS", "many"),
        ("MAX_BODY_BYTES", "-1"),
        ("MAX_NAME_CHARS", "0"),
        ("MAX_CONNECTIONS", "lots"),
        ("HEADER_TIMEOUT", "soon"),
        ("IDLE_TIMEOUT", "5"),
        ("SHUTDOWN_TIMEOUT", "0s"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        ("ACCESS_LOG", "maybe"),
    ] {
        let out = run_to_exit(&[], &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{var}={value}: {:?}", out.stderr);
        assert!(
            lines[0].contains(var) && lines[0].contains(value),
            "{var}={value}: {}",
            lines[0]
        );
    }
}

#[test]
fn missing_tls_files_exit_2() {
    let out = run_to_exit(
        &[],
        &[
            ("TLS_CERT", "/nonexistent/cert.pem"),
            ("TLS_KEY", "/nonexistent/key.pem"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("TLS_CERT") && out.stderr.contains("/nonexistent/cert.pem"));
}

#[test]
fn empty_otel_variables_mean_unset_and_the_start_up_line_says_export_is_off() {
    // OpenTelemetry's environment rule; compose writes `${VAR:-}` as an empty value.
    let app = TestServer::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ("OTEL_TRACES_SAMPLER", ""),
        ("OTEL_TRACES_SAMPLER_ARG", ""),
        ("OTEL_SERVICE_NAME", ""),
    ]);
    let line = app.wait_for_log("\"listening\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span_export"], "off", "{line}");
    assert_eq!(v["runtime"], "per-core", "{line}");
    // A value that is set is still checked.
    let out = run_to_exit(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{}",
        out.stderr
    );
}

#[test]
fn flags_win_over_variables() {
    let out = run_to_exit(&["--port", "abc"], &[("PORT", "8080")]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_to_exit(&["--workers", "0"], &[("WORKERS", "2")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("WORKERS"));
    // And a good flag overrides a bad variable.
    let app = TestServer::spawn_args(
        &["--port", "0", "--max-name-chars", "3"],
        &[("PORT", "abc"), ("MAX_NAME_CHARS", "100")],
    );
    let mut raw = app.raw();
    raw.send(b"POST /greet HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"name\":\"Anna\"}");
    assert_eq!(raw.read_responses(1)[0].status, 400);
}

#[test]
fn port_in_use_exits_1_with_a_clear_message() {
    let app = TestServer::spawn();
    let port = app.addr.port().to_string();
    let out = run_to_exit(&[], &[("PORT", &port), ("HOST", "127.0.0.1")]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("cannot bind"), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("in use"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_lists_every_setting_with_defaults_and_version_prints() {
    let out = run_to_exit(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    for (flag, var, default) in [
        ("--port", "PORT", Some("8080")),
        ("--host", "HOST", Some("0.0.0.0")),
        ("--workers", "WORKERS", None),
        ("--max-body-bytes", "MAX_BODY_BYTES", Some("16384")),
        ("--max-name-chars", "MAX_NAME_CHARS", Some("256")),
        ("--max-connections", "MAX_CONNECTIONS", None),
        ("--memory-budget", "MEMORY_BUDGET", None),
        ("--header-timeout", "HEADER_TIMEOUT", Some("5s")),
        ("--idle-timeout", "IDLE_TIMEOUT", Some("60s")),
        ("--shutdown-timeout", "SHUTDOWN_TIMEOUT", Some("10s")),
        ("--shutdown-delay", "SHUTDOWN_DELAY", Some("0s")),
        ("--log-format", "LOG_FORMAT", Some("json")),
        ("--log-level", "LOG_LEVEL", Some("info")),
        ("--access-log", "ACCESS_LOG", Some("false")),
        ("--tls-cert", "TLS_CERT", None),
        ("--tls-key", "TLS_KEY", None),
    ] {
        assert!(out.stdout.contains(flag), "{flag} missing from --help");
        assert!(out.stdout.contains(&format!("env: {var}")), "{var} missing");
        if let Some(d) = default {
            assert!(
                out.stdout.contains(&format!("[default: {d}]")),
                "{flag} default {d}"
            );
        }
    }
    let out = run_to_exit(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_memory_budget_sets_the_connection_cap_and_the_body_buffer_limit() {
    for (budget, connections, bodies) in [
        ("1GiB", 10_000, (1024u64 - 32) << 18),
        ("256MiB", 2389, 56 << 20),
    ] {
        let app = TestServer::spawn_with(&[("MEMORY_BUDGET", budget)]);
        let line = app.wait_for_log("\"listening\"");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["max_connections"], connections, "{line}");
        assert_eq!(v["body_buffer_limit"], bodies, "{line}");
        assert_eq!(v["memory_budget_from"], "MEMORY_BUDGET", "{line}");
    }
    // An explicit MAX_CONNECTIONS wins over the budget's.
    let app = TestServer::spawn_with(&[("MEMORY_BUDGET", "256MiB"), ("MAX_CONNECTIONS", "77")]);
    assert!(app
        .wait_for_log("\"listening\"")
        .contains(r#""max_connections":77"#));
    let out = run_to_exit(&[], &[("MEMORY_BUDGET", "1MiB")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("MEMORY_BUDGET") && out.stderr.contains("64MiB"),
        "{}",
        out.stderr
    );
}

#[test]
fn binds_ipv6_when_asked() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let app = TestServer::spawn_with(&[("HOST", "::1")]);
    assert!(app.addr.is_ipv6());
    let r = app
        .raw()
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .read_responses(1);
    assert_eq!(r[0].status, 200);
}

#[test]
fn healthcheck_subcommand_reports_the_local_server() {
    let app = TestServer::spawn();
    let port = app.addr.port().to_string();
    let env = [("PORT", port.as_str()), ("HOST", "127.0.0.1")];
    let out = run_to_exit(&["healthcheck"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // HOST=0.0.0.0 (the default) asks loopback.
    let out = run_to_exit(&["healthcheck"], &[("PORT", port.as_str())]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // Something that is not a healthy server on the port: unhealthy, exit 1. (A
    // listener this test holds, so no other test can take the port meanwhile.)
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let impostor_port = impostor.local_addr().unwrap().port().to_string();
    let answering = std::thread::spawn(move || {
        let (mut s, _) = impostor.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
        let _ = std::io::Write::write_all(&mut s, b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    });
    let out = run_to_exit(
        &["healthcheck"],
        &[("PORT", impostor_port.as_str()), ("HOST", "127.0.0.1")],
    );
    answering.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("unhealthy"), "{}", out.stderr);
    let help = run_to_exit(&["--help"], &[]);
    assert!(help.stdout.contains("healthcheck"), "{}", help.stdout);
}
