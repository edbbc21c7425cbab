//! The `/mock/*` control API and request recording.

use serde_json::json;

use crate::client::{get, post, send};
use crate::start;
use llmux_mock::{Fault, MockConfig};

#[tokio::test]
async fn config_over_http() {
    let mock = start(MockConfig::new("delta", &["m"])).await;
    let cfg = get(mock.addr(), "/mock/config").await.json();
    assert_eq!(cfg["name"], "delta");
    assert_eq!(cfg["fault"], "none");
    assert_eq!(cfg["context_length"], 8192);

    let resp = post(
        mock.addr(),
        "/mock/config",
        &json!({ "reply": "Custom {name}/{model}: {input}", "fault": {"drop_after_chunks": 1}, "fault_times": 1 }),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["fault"], json!({ "drop_after_chunks": 1 }));
    assert_eq!(mock.config().fault, Fault::DropAfterChunks(1));
    assert_eq!(mock.config().name, "delta", "unmentioned knobs are kept");

    let body = json!({ "model": "m", "stream": false, "messages": [{"role": "user", "content": "ping"}] });
    assert_eq!(post(mock.addr(), "/api/chat", &body).await.raw_len, 0);
    let v = post(mock.addr(), "/api/chat", &body).await.json();
    assert_eq!(v["message"]["content"], "Custom delta/m: ping");

    for bad in [json!({ "no_such_knob": 1 }), json!({ "fault": "explode" }), json!([1])] {
        let resp = post(mock.addr(), "/mock/config", &bad).await;
        assert_eq!(resp.status, 400, "{bad}");
        assert!(resp.json()["error"].is_string());
    }
    // In-process changes show over HTTP too.
    mock.set_config(|c| c.latency_ms = 7);
    assert_eq!(get(mock.addr(), "/mock/config").await.json()["latency_ms"], 7);

    // Reset restores the start-up knobs.
    assert_eq!(post(mock.addr(), "/mock/reset", &json!({})).await.status, 204);
    assert_eq!(mock.config(), MockConfig::new("delta", &["m"]));
}

#[tokio::test]
async fn requests_are_recorded() {
    let mock = start(MockConfig::new("delta", &[])).await;
    let body = json!({ "model": "any-model", "messages": [{"role": "user", "content": "hi"}], "stream": false });
    let resp = send(
        mock.addr(),
        "POST",
        "/v1/chat/completions?api-version=1",
        Some(&body),
        &[("Authorization", "Bearer sk-test"), ("X-Trace", "abc")],
    )
    .await;
    assert_eq!(resp.status, 200);
    let resp = send(mock.addr(), "POST", "/api/embed", None, &[("content-type", "text/plain")]).await;
    assert_eq!(resp.status, 400);
    // Control requests are not recorded.
    get(mock.addr(), "/mock/stats").await;

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].query.as_deref(), Some("api-version=1"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(seen[0].header("x-trace"), Some("abc"));
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].model(), Some("any-model"));
    assert_eq!(seen[0].raw_body, body.to_string().as_bytes());
    assert_eq!(seen[1].path, "/api/embed");
    assert!(seen[1].body.is_null());

    let over_http = get(mock.addr(), "/mock/requests").await.json();
    assert_eq!(over_http[0]["path"], "/v1/chat/completions");
    assert_eq!(over_http[0]["body"], body);
    assert_eq!(over_http[0]["raw_body"], body.to_string());
    assert_eq!(over_http[0]["headers"][0][0].as_str().map(str::to_lowercase), Some("host".into()));

    let stats = get(mock.addr(), "/mock/stats").await.json();
    assert_eq!(stats["requests"]["/v1/chat/completions"], 1);
    assert_eq!(stats["total"], 2);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["cancelled"], 0);

    assert_eq!(send(mock.addr(), "DELETE", "/mock/requests", None, &[]).await.status, 204);
    assert!(mock.requests().is_empty());
    post(mock.addr(), "/api/generate", &json!({"model": "x", "prompt": "y"})).await;
    assert_eq!(mock.requests().len(), 1);
    mock.clear_requests();
    assert!(mock.requests().is_empty());
}
