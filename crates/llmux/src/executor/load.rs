//! Loads owned by the router. A request that finds its model cold on an Ollama host does not make the engine load
//! it itself: if its client hung up, Ollama would abort the load and the next request would pay it again. llmux
//! sets the load off with Ollama's documented preload (an empty `/api/generate` with the deployment's
//! `keep_alive`) on a task of its own, which no client owns; the request, and any other that wants the model
//! meanwhile, goes to the engine once the load is done (a stream shows `: loading <model> on <host>, Ns` while
//! it waits). The wait counts against the request's first-byte time: a request that gives up leaves the load
//! running for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::{Config, Deployment};
use crate::providers::Adapter;
use crate::upstream::HttpClient;

/// The loads under way, by deployment index: each resolves when its preload answered (or failed).
#[derive(Debug, Default)]
pub(super) struct Loads(Arc<Mutex<HashMap<usize, watch::Receiver<bool>>>>);

impl Loads {
    /// Starts the load of deployment `d`'s `model` on its host, or joins the one under way; `None` when its
    /// engine does not load on an empty request (only Ollama does). The returned receiver turns `true` when
    /// the load is over.
    pub(super) fn start(
        &self,
        config: &Arc<Config>,
        client: &HttpClient,
        d: &Deployment,
        model: &str,
    ) -> Option<watch::Receiver<bool>> {
        let engine = d.engine().filter(|e| matches!(e.adapter(), Adapter::Ollama { .. }))?;
        let host = d.host?;
        let mut loads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(under_way) = loads.get(&d.index) {
            return Some(under_way.clone());
        }
        let (done, receiver) = watch::channel(false);
        loads.insert(d.index, receiver.clone());
        let (registry, config, client, index) = (self.0.clone(), config.clone(), client.clone(), d.index);
        let (model, keep_alive) = (model.to_owned(), engine.keep_alive.clone());
        tokio::spawn(async move {
            if let Some(spec) = config.hosts.get(host) {
                crate::health::preload(spec, &model, keep_alive, &client).await;
            }
            registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&index);
            let _ = done.send(true);
        });
        Some(receiver)
    }
}
