//! The llmux binary's lifecycle, driven as a real process: drain on SIGTERM, config reload (file change,
//! SIGHUP, `POST /config/reload`), native TLS with certificate reload, `llmux healthcheck`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{free_port, write, Process};
use common::{chat_body, eventually, mock, mock_with, posts, sse_events, stream_text, Llmux};
use http_body_util::BodyExt;
use llmux_mock::MockConfig;

fn config_with(models: &[(&str, &str)]) -> String {
    let mut yaml = String::from("model_list:\n");
    for (name, base) in models {
        yaml.push_str(&format!(
            "  - model_name: {name}\n    litellm_params: {{model: ollama_chat/m, api_base: \"{base}\"}}\n"
        ));
    }
    yaml.push_str("general_settings:\n  master_key: sk-lifecycle-test\n");
    yaml
}

const KEY: Option<&str> = Some("sk-lifecycle-test");

/// An engine that streams `tokens` tokens at `per_sec`.
async fn slow_engine(per_sec: f64, tokens: u32) -> llmux_mock::MockHandle {
    let mut slow = MockConfig::new("slow", &["m"]);
    slow.tokens_per_sec = per_sec;
    slow.reply_tokens = Some(tokens);
    mock_with(slow).await
}

/// A config file in `dir` serving `models`.
fn config_file(dir: &Path, models: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("config.yaml");
    write(&path, &config_with(models));
    path
}

#[tokio::test]
async fn sigterm_drains_a_stream_that_started_before_it() {
    let engine = slow_engine(10.0, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &engine.base_url())]);
    let mut llmux = Process::start(&path, &["--drain-grace", "0.5", "--drain-timeout", "20"]);
    llmux.ready().await;
    let client = llmux.client();

    let (first, mut body) = client.stream_first_frame_key("/v1/chat/completions", &chat_body("g", true), KEY).await;
    llmux.signal("TERM");
    let started = Instant::now();
    // Readiness flips at once, liveness stays up, and requests are still served during the grace.
    eventually("readiness 503", Duration::from_secs(2), async || client.get("/health/readiness").await.status == 503)
        .await;
    assert!(started.elapsed() < Duration::from_millis(500), "readiness flipped late: {:?}", started.elapsed());
    let ready = client.get("/health/readiness").await;
    assert_eq!(ready.json()["status"], "shutting_down");
    assert_eq!(client.get("/health/liveliness").await.status, 200);

    // The listener closes after the grace ...
    eventually("listener closed", Duration::from_secs(3), async || {
        tokio::net::TcpStream::connect(llmux.addr()).await.is_err()
    })
    .await;
    // ... while the stream that began before SIGTERM runs to the end, intact.
    let mut frames = vec![(Instant::now(), first)];
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the stream is not cut").into_data() {
            frames.push((Instant::now(), data));
        }
    }
    let events = sse_events(&frames);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "stream ended early: {events:?}");
    assert_eq!(stream_text(&events).split_whitespace().count(), 20, "every token arrived");
    let status = llmux.exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(posts(&engine).len(), 1);
}

#[tokio::test]
async fn drain_timeout_bounds_a_stream_that_would_not_end() {
    let engine = slow_engine(2.0, 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &engine.base_url())]);
    let mut llmux = Process::start(&path, &["--drain-grace", "0", "--drain-timeout", "1"]);
    llmux.ready().await;
    let (_first, _body) =
        llmux.client().stream_first_frame_key("/v1/chat/completions", &chat_body("g", true), KEY).await;
    let started = Instant::now();
    llmux.signal("TERM");
    let status = llmux.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "left before the drain timeout");
}

#[tokio::test]
async fn a_changed_config_file_is_reloaded_and_a_broken_one_is_refused() {
    let a = mock("a", &["m"]).await;
    let b = mock("b", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("first", &a.base_url())]);
    let llmux = Process::start(&path, &["--watch", "0.2"]);
    llmux.ready().await;
    let client = llmux.client();
    assert_eq!(client.post_key("/v1/chat/completions", &chat_body("first", false), KEY).await.status, 200);
    assert_eq!(client.post_key("/v1/chat/completions", &chat_body("second", false), KEY).await.status, 400);

    write(&path, &config_with(&[("first", &a.base_url()), ("second", &b.base_url())]));
    eventually("the new model group is served", Duration::from_secs(5), async || {
        client.post_key("/v1/chat/completions", &chat_body("second", false), KEY).await.status == 200
    })
    .await;
    assert_eq!(posts(&b).len(), 1);

    // A broken file: the running config stays, and the endpoint says exactly what is wrong.
    write(&path, "model_list:\n  - model_name: second\n    litellm_params: {model: 42}\n");
    client.watch_round(KEY).await;
    assert_eq!(client.post_key("/v1/chat/completions", &chat_body("second", false), KEY).await.status, 200);
    let refused = client.post_key("/config/reload", "", KEY).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let message = refused.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("model_list[0].litellm_params.model"), "{message}");
    assert_eq!(refused.json()["error"]["type"], "invalid_config");
    assert_eq!(client.post_key("/config/reload", "", None).await.status, 401, "reload needs the master key");
}

#[tokio::test]
async fn sighup_reloads_and_requests_in_flight_finish_on_the_old_config() {
    let old = slow_engine(20.0, 20).await;
    let new = mock("new", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &old.base_url())]);
    let llmux = Process::start(&path, &["--watch", "0"]);
    llmux.ready().await;
    let client = llmux.client();
    let (first, mut body) = client.stream_first_frame_key("/v1/chat/completions", &chat_body("g", true), KEY).await;

    write(&path, &config_with(&[("g", &new.base_url())]));
    assert_eq!(client.watch_round(KEY).await.status, 404, "--watch 0: nothing watches the file");
    assert_eq!(client.post_key("/v1/chat/completions", &chat_body("g", false), KEY).await.status, 200);
    assert_eq!(posts(&new).len(), 0, "--watch 0: the file alone does not reload");
    llmux.signal("HUP");
    eventually("SIGHUP switched g to the new engine", Duration::from_secs(5), async || {
        client.post_key("/v1/chat/completions", &chat_body("g", false), KEY).await;
        !posts(&new).is_empty()
    })
    .await;

    let mut frames = vec![(Instant::now(), first)];
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("stream frame").into_data() {
            frames.push((Instant::now(), data));
        }
    }
    let events = sse_events(&frames);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_text(&events).split_whitespace().count(), 20, "the old stream finished on the old engine");

    let report = client.post_key("/config/reload", "", KEY).await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["status"], "reloaded");
    assert_eq!(report.json()["deployments"], 1);
}

/// A self-signed certificate for 127.0.0.1 / localhost, as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key, generated.cert.der().to_vec())
}

/// The certificate the server presents, after a full TLS handshake that trusts only `trusted`.
async fn served_certificate(addr: std::net::SocketAddr, trusted: &[u8]) -> Result<Vec<u8>, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(common::tls_trusting(trusted)));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default())
}

#[tokio::test]
async fn native_tls_serves_https_and_reloads_the_certificate() {
    let engine = mock("e", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &engine.base_url())]);
    let (cert, key, first) = certificate(dir.path(), "one");
    let llmux = Process::start(&path, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    llmux.ready().await;
    assert_eq!(served_certificate(llmux.addr(), &first).await.as_deref(), Ok(&first[..]));

    // A chat request over HTTPS with a client that trusts the certificate.
    let https = common::https_client(&first);
    let request = http::Request::post(format!("https://localhost:{}/v1/chat/completions", llmux.port))
        .header("authorization", "Bearer sk-lifecycle-test")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body("g", false))))
        .unwrap();
    let response = https.request(request).await.expect("https answers");
    assert_eq!(response.status(), 200);

    // Plain HTTP on the TLS port gets no answer.
    assert!(tokio::time::timeout(Duration::from_secs(5), async {
        let plain = Llmux::at(llmux.addr());
        plain.try_get("/health/liveliness").await
    })
    .await
    .map_or(true, |r| r.is_err()));

    // `llmux healthcheck` speaks HTTPS when --tls-cert is set.
    let check = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["healthcheck", "--port", &llmux.port.to_string()])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // A renewed certificate is served after a reload, without a restart.
    let (cert2, key2, second) = certificate(dir.path(), "two");
    std::fs::rename(cert2, &cert).unwrap();
    std::fs::rename(key2, &key).unwrap();
    let client = Llmux::at_tls(llmux.addr(), &first);
    let reloaded = client.post_key("/config/reload", "", KEY).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(served_certificate(llmux.addr(), &second).await.as_deref(), Ok(&second[..]));
}

#[tokio::test]
async fn healthcheck_fails_when_nothing_listens_and_when_draining() {
    let port = free_port();
    let check = Command::new(env!("CARGO_BIN_EXE_llmux")).args(["healthcheck", "--port", &port.to_string()]).output();
    let check = check.unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("not ready"));

    let engine = mock("e", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &engine.base_url())]);
    let llmux = Process::start(&path, &["--drain-grace", "5"]);
    llmux.ready().await;
    let probe = || {
        Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(["healthcheck", "--port", &llmux.port.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(probe());
    llmux.signal("TERM");
    eventually("a draining llmux is not ready", Duration::from_secs(5), async || !probe()).await;
}

#[tokio::test]
async fn a_second_signal_stops_waiting() {
    let engine = mock("e", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &engine.base_url())]);
    let mut llmux = Process::start(&path, &["--drain-grace", "60", "--drain-timeout", "60"]);
    llmux.ready().await;
    llmux.signal("TERM");
    eventually("readiness 503", Duration::from_secs(2), async || {
        llmux.client().get("/health/readiness").await.status == 503
    })
    .await;
    llmux.signal("INT");
    let status = llmux.exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_reload_that_would_empty_the_service_or_drop_its_key_is_refused() {
    let a = mock("a", &["m"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &[("g", &a.base_url())]);
    let llmux = Process::start(&path, &["--watch", "0.2"]);
    llmux.ready().await;
    let client = llmux.client();
    let served = async || client.post_key("/v1/chat/completions", &chat_body("g", false), KEY).await.status;
    let keyless = async || client.post_key("/v1/chat/completions", &chat_body("g", false), None).await.status;
    let refusal = async || {
        let reply = client.post_key("/config/reload", "", KEY).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        reply.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    };

    // An empty file (a non-atomic write caught half-way) loads as a config with no deployments: refused.
    write(&path, "");
    client.watch_round(KEY).await;
    assert_eq!(served().await, 200);
    assert!(refusal().await.contains("no deployments"));

    // The file lost its general_settings: the models are there, the key is not. Refused; the key still holds.
    let models_only =
        config_with(&[("g", &a.base_url())]).replace("general_settings:\n  master_key: sk-lifecycle-test\n", "");
    write(&path, &models_only);
    client.watch_round(KEY).await;
    assert_eq!(keyless().await, 401);
    assert!(refusal().await.contains("drops general_settings.master_key"));

    // Said explicitly, it goes through (on loopback, where no key is allowed).
    write(&path, &format!("{models_only}general_settings:\n  allow_auth_change_on_reload: true\n"));
    eventually("the key was dropped on purpose", Duration::from_secs(5), async || keyless().await == 200).await;
}

#[tokio::test]
async fn a_public_address_without_a_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    write(&path, "model_list:\n  - model_name: g\n    litellm_params: {model: ollama_chat/m, api_base: \"http://127.0.0.1:9\"}\n");
    let port = free_port().to_string();
    // Refused before anything is bound.
    let out = Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["--config", path.to_str().unwrap(), "--host", "0.0.0.0", "--port", &port, "--watch", "0"])
        .env_remove("LLMUX_ALLOW_NO_AUTH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master_key") && stderr.contains("--allow-no-auth"), "{stderr}");
}
