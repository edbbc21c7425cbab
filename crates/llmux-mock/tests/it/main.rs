//! Integration tests: the mock over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

mod client;
mod control;
mod faults;
mod ollama;
mod openai;
mod residency;

use std::time::{Duration, Instant};

use llmux_mock::{MockConfig, MockHandle, MockServer, MockStats};

/// Starts a mock on an ephemeral loopback port.
pub async fn start(config: MockConfig) -> MockHandle {
    MockServer::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("start mock")
}

/// Polls the mock's stats until `done` holds (or fails after a while).
pub async fn wait_stats(mock: &MockHandle, done: impl Fn(&MockStats) -> bool) -> MockStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = mock.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never settled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
