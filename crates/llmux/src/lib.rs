//! llmux: one OpenAI-compatible endpoint in front of many inference engines, configured with LiteLLM's proxy
//! `config.yaml`.
//!
//! The request path runs one way: [`server`] decodes the client's request, [`router::plan`] decides every
//! attempt, retry, `order` escalation and fallback (a pure state machine; [`router::pick`] chooses the
//! deployment), the [`executor::Executor`] carries the plan out through [`providers`] (one adapter per engine family),
//! and the answer streams back. [`config`] turns the YAML into an immutable snapshot (`config::load` reads every
//! file, one module per config section validates its part, every default is a named constant in
//! `config::defaults`); [`state`] holds what traffic and probes taught the router (per deployment and per host),
//! and [`shared`] copies it between replicas through Redis.

pub mod access_log;
pub mod body;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod executor;
pub mod health;
pub mod healthcheck;
pub mod images;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod observe;
pub mod otel;
pub mod protocol;
pub mod providers;
pub mod redact;
pub mod router;
pub mod server;
pub mod shared;
pub mod shared_responses;
pub mod state;
pub mod status;
pub mod upstream;
pub mod warmup;
