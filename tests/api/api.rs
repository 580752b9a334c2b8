//! The API (README: Using it, Errors) and the probes, over HTTP/1.1.

use crate::helpers::{body_with_name, Conn, TestServer};

#[tokio::test]
async fn greets_with_exact_body_and_headers() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let r = c.greet(r#"{"name":"John"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"message":"Hello, John!"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
    assert!(r.header("server").is_none());
}

#[tokio::test]
async fn trims_and_escapes_names() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    for (name, expected) in [
        ("  John\t\n", r#"{"message":"Hello, John!"}"#),
        ("日本語 😀", r#"{"message":"Hello, 日本語 😀!"}"#),
        (
            "<script>&",
            r#"{"message":"Hello, \u003cscript\u003e\u0026!"}"#,
        ),
        (
            "a\u{2028}b\u{2029}c",
            r#"{"message":"Hello, a\u2028b\u2029c!"}"#,
        ),
        ("say \"hi\" \\", r#"{"message":"Hello, say \"hi\" \\!"}"#),
        ("\u{3000}Zoë\u{a0}", r#"{"message":"Hello, Zoë!"}"#),
    ] {
        let r = c.greet(&body_with_name(name)).await;
        assert_eq!(r.status, 200, "{name:?}");
        assert_eq!(r.text(), expected, "{name:?}");
        let decoded = r.json();
        assert_eq!(decoded["message"], format!("Hello, {}!", name.trim()));
    }
}

#[tokio::test]
async fn ignores_unknown_fields() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let r = c
        .greet(r#"{"id":7,"name":"Ann","tags":["a",{"name":"x"}],"meta":{"name":null}}"#)
        .await;
    assert_eq!(r.text(), r#"{"message":"Hello, Ann!"}"#);
}

#[tokio::test]
async fn accepts_json_content_types_and_rejects_others() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let body = br#"{"name":"John"}"#;
    for ct in [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON;Charset=UTF-8"),
        Some("application/vnd.greeting+json"),
    ] {
        let r = c.post("/greet", ct, body).await;
        assert_eq!(r.status, 200, "{ct:?}");
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "text/json",
        "multipart/form-data; boundary=x",
    ] {
        let r = c.post("/greet", Some(ct), body).await;
        let p = r.assert_problem(415);
        assert_eq!(p["title"], "Unsupported Media Type");
    }
}

#[tokio::test]
async fn validation_errors_are_400_problems_naming_the_rule() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let long = "x".repeat(257);
    for (body, detail) in [
        (r#"{}"#.to_owned(), "name is required"),
        (r#"{"name":null}"#.to_owned(), "name must not be null"),
        (r#"{"name":42}"#.to_owned(), "name must be a string"),
        (r#"{"name":["John"]}"#.to_owned(), "name must be a string"),
        (r#"{"name":""}"#.to_owned(), "name must not be empty"),
        (r#"{"name":"  \t "}"#.to_owned(), "name must not be empty"),
        (body_with_name(&long), "name is longer than 256 characters"),
        (
            body_with_name("a\u{0}b"),
            "name must not contain control characters",
        ),
        (
            body_with_name("a\u{85}b"),
            "name must not contain control characters",
        ),
        (r#"["John"]"#.to_owned(), "body must be a JSON object"),
        (r#""John""#.to_owned(), "body must be a JSON object"),
        (String::new(), "body is empty; expected a JSON object"),
    ] {
        let r = c.greet(&body).await;
        let p = r.assert_problem(400);
        assert_eq!(p["title"], "Bad Request");
        assert_eq!(p["detail"], detail, "{body}");
    }
}

#[tokio::test]
async fn malformed_json_reports_a_byte_offset_and_invalid_utf8_is_400() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    for body in [
        &br#"{"name":"John""#[..],
        b"{name:1}",
        br#"{"name":"x"} trailing"#,
    ] {
        let r = c.post("/greet", Some("application/json"), body).await;
        let p = r.assert_problem(400);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON at byte "),
            "{p}"
        );
    }
    let r = c
        .post(
            "/greet",
            Some("application/json"),
            b"{\"name\":\"Jo\xffhn\"}",
        )
        .await;
    assert_eq!(r.assert_problem(400)["detail"], "body is not valid UTF-8");
}

#[tokio::test]
async fn name_limit_counts_characters() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let r = c.greet(&body_with_name(&"é".repeat(256))).await;
    assert_eq!(r.status, 200);
    let r = c.greet(&body_with_name(&"é".repeat(257))).await;
    r.assert_problem(400);

    let small = TestServer::spawn_with(&[("MAX_NAME_CHARS", "3")]);
    let mut c = Conn::h1(small.addr).await;
    assert_eq!(c.greet(&body_with_name("Ann")).await.status, 200);
    let p = c.greet(&body_with_name("Anna")).await.assert_problem(400);
    assert_eq!(p["detail"], "name is longer than 3 characters");
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = c.request(method, "/greet").await;
        r.assert_problem(405);
        assert_eq!(r.header("allow"), Some("POST"));
    }
    let r = c.request("POST", "/healthz").await;
    r.assert_problem(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    for path in ["/", "/nope", "/greet/", "/greet/x", "/GREET"] {
        let r = c.get(path).await;
        let p = r.assert_problem(404);
        assert_eq!(p["title"], "Not Found");
        assert!(r.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn probes() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let r = c.get("/healthz").await;
    assert_eq!((r.status, r.text()), (200, r#"{"status":"ok"}"#));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = c.get("/readyz").await;
    assert_eq!((r.status, r.text()), (200, r#"{"status":"ready"}"#));
    let r = c.request("HEAD", "/healthz").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_fresh_otherwise() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    let with_id = |id: &str| {
        http::Request::post("/greet")
            .header("host", "x")
            .header("x-request-id", id)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"name":"A"}"#,
            )))
            .unwrap()
    };
    let r = c.send(with_id("abc-123_XYZ")).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123_XYZ"));
    let max = "k".repeat(128);
    assert_eq!(
        c.send(with_id(&max)).await.header("x-request-id"),
        Some(&*max)
    );

    let mut seen = std::collections::HashSet::new();
    for bad in ["has space", &"k".repeat(129), "tab\there"] {
        let id = c
            .send(with_id(bad))
            .await
            .header("x-request-id")
            .unwrap()
            .to_owned();
        assert_ne!(id, bad);
        assert!(seen.insert(id));
    }
    for _ in 0..50 {
        let id = c
            .get("/healthz")
            .await
            .header("x-request-id")
            .unwrap()
            .to_owned();
        assert!(id.bytes().all(|b| b.is_ascii_graphic()) && !id.is_empty());
        assert!(seen.insert(id), "request ids must be unique");
    }
}

#[tokio::test]
async fn body_limit_edges() {
    let app = TestServer::spawn();
    let mut c = Conn::h1(app.addr).await;
    // Exactly 16384 bytes: a valid object padded with white space.
    let base = r#"{"name":"John"}"#;
    let exact = format!("{base}{}", " ".repeat(16384 - base.len()));
    assert_eq!(exact.len(), 16384);
    assert_eq!(c.greet(&exact).await.status, 200);

    let mut c = Conn::h1(app.addr).await;
    let over = format!("{exact} ");
    let p = c.greet(&over).await.assert_problem(413);
    assert_eq!(p["detail"], "body is larger than 16384 bytes");

    let small = TestServer::spawn_with(&[("MAX_BODY_BYTES", "20")]);
    let mut c = Conn::h1(small.addr).await;
    assert_eq!(c.greet(r#"{"name":"John"}"#).await.status, 200);
    c = Conn::h1(small.addr).await;
    c.greet(r#"{"name":"Johnathan Doe"}"#)
        .await
        .assert_problem(413);
}
