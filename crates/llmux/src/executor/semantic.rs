//! The embedder a semantic router is handed in production: its utterances (once per config) and each request's
//! last user text are embedded through llmux's own routing.

use http_body_util::BodyExt;

use super::{request_messages, Executor};
use crate::protocol::openai::{Operation, RequestHead};
use crate::router::semantic;

impl Executor {
    /// Where a semantic router sends this request body.
    pub(super) async fn semantic_route(&self, router: &semantic::SemanticRouter, body: &[u8]) -> semantic::Choice {
        router.route(&request_messages(body), &Routed(self)).await
    }

    /// Embeds every semantic router's utterances now, so the first request does not wait for it; a failure is
    /// logged and retried by the first request that needs them.
    pub async fn prepare_semantic_routers(&self) {
        for d in &self.config.deployments {
            if let crate::config::Target::AutoRouter { semantic: Some(router), .. } = &d.target {
                match router.prepare(&Routed(self)).await {
                    Ok(_) => tracing::info!(
                        "semantic router {}: {} utterances embedded",
                        d.model_name,
                        router.utterances().len()
                    ),
                    Err(e) => tracing::warn!("semantic router {}: {e}; retried on its first request", d.model_name),
                }
            }
        }
    }
}

/// Embeddings through llmux's own routing (order, health, fallbacks of the embedding group).
struct Routed<'e>(&'e Executor);

impl semantic::Embedder for Routed<'_> {
    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: &'a [&'a str],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, String>> {
        // Boxed: this request runs through `execute`, which may reach a semantic router again.
        Box::pin(self.0.embed(model, inputs))
    }
}

impl Executor {
    /// Embeds `inputs` with the model name `model`, through llmux's own routing.
    async fn embed(&self, model: &str, inputs: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        #[derive(serde::Deserialize)]
        struct Embeddings {
            data: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            embedding: Vec<f32>,
            #[serde(default)]
            index: usize,
        }
        let body =
            serde_json::to_vec(&serde_json::json!({"model": model, "input": inputs})).map_err(|e| e.to_string())?;
        let head = RequestHead::parse(&body, Operation::Embeddings).map_err(|e| e.to_string())?;
        let response =
            Box::pin(self.execute(Operation::Embeddings, &body, &head, &crate::observe::Trace::default())).await;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), 64 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| format!("reading the embeddings: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{model} answered {status}: {}",
                String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
            ));
        }
        let mut parsed: Embeddings =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable embeddings: {e}"))?;
        parsed.data.sort_by_key(|item| item.index);
        Ok(parsed.data.into_iter().map(|item| item.embedding).collect())
    }
}
