//! Loads owned by the router. A request that finds its model cold on an Ollama host does not make the engine load
//! it itself: if its client hung up, Ollama would abort the load and the next request would pay it again. llmux
//! sets the load off with Ollama's documented preload (an empty `/api/generate` with the deployment's
//! `keep_alive`) on a task of its own, which no client owns; the request, and any other that wants the model
//! meanwhile, goes to the engine once the load is done (a stream shows `: loading <model> on <host>, Ns` while
//! it waits). The wait counts against the request's first-byte time: a request that gives up leaves the load
//! running for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Config, Deployment};
use crate::providers::Adapter;
use crate::router;
use crate::state::{HostIx, Millis};
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

impl super::Executor {
    /// Deployment `index` was sent a request that loads its model, allowed to take until `until`.
    pub(super) fn load_started(&self, index: usize, until: Instant) -> Instant {
        self.loading.lock().unwrap_or_else(|e| e.into_inner()).insert(index, until);
        until
    }

    /// The request that set off the load on deployment `index` (allowed until `until`) got its answer or failed.
    pub(super) fn load_awaited(&self, index: usize, until: Instant) {
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.get(&index) == Some(&until) {
            loading.remove(&index);
        }
    }

    /// Marks the views of `members` whose host is busy with a load llmux set off for another model (still
    /// awaited), so routing keeps other models off it meanwhile.
    pub(super) fn mark_host_loading(&self, members: &[usize], views: &mut [router::DeploymentView]) {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.is_empty() {
            return;
        }
        let now = Instant::now();
        let deployments = &self.config.deployments;
        let model = |i: usize| deployments.get(i).and_then(|d| d.engine()).map(|e| e.upstream_model.as_str());
        for (&i, view) in members.iter().zip(views.iter_mut()) {
            let Some(host) = deployments.get(i).and_then(|d| d.host) else { continue };
            view.host_loading |= loading.iter().any(|(&j, until)| {
                *until > now && deployments.get(j).and_then(|d| d.host) == Some(host) && model(j) != model(i)
            });
        }
    }

    /// How much longer the load llmux set off on deployment `index` may take, while one is awaited.
    pub(super) fn load_in_progress(&self, index: usize) -> Option<Duration> {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        loading.get(&index).map(|until| until.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Probes `host` in the background if its engine tells what is loaded (and so what a load evicted) and it
    /// was not re-probed in the last two seconds.
    pub(super) fn reprobe(&self, host: Option<usize>, now: Millis) {
        let tells = |h: &crate::config::Host| h.profile.reports_residency;
        let Some(host) = host.filter(|&h| self.config.hosts.get(h).is_some_and(tells)) else {
            return;
        };
        if !self.state.claim_reprobe(HostIx(host), now, 2_000) {
            return;
        }
        let (config, state, client) = (self.config.clone(), self.state.clone(), self.client.clone());
        tokio::spawn(async move { crate::health::probe_hosts(&config, &state, &client, std::iter::once(host)).await });
    }
}
