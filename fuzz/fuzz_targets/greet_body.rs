//! Body parser + validator + renderer: never panics, and every greeting it renders
//! is JSON that decodes to `Hello, <trimmed name>!` with no raw HTML-significant
//! characters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(out) = greeting_service::domain::greet::greet(body, 256) {
        let text = std::str::from_utf8(&out).expect("greeting is UTF-8");
        let v: serde_json::Value = serde_json::from_str(text).expect("greeting is JSON");
        let message = v["message"].as_str().expect("message is a string");
        assert!(message.starts_with("Hello, ") && message.ends_with('!'));
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!text.contains(bad));
        }
        // The body was valid JSON with a string name: serde_json agrees.
        let parsed: serde_json::Value = serde_json::from_slice(body).expect("valid body");
        let name = parsed["name"].as_str().expect("string name");
        assert_eq!(message, format!("Hello, {}!", name.trim()));
    }
});
