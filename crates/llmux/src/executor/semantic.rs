//! A semantic router's embeddings: utterances embedded once per config, the request's last user text on each
//! request, both through llmux's own routing.

use http_body_util::BodyExt;

use super::{request_messages, Executor};
use crate::protocol::openai::{Operation, RequestHead};
use crate::router::semantic;

impl Executor {
    /// Where a semantic router sends this request body. Never fails: without user text, or when an embedding
    /// call fails, the router's default model is the answer.
    pub(super) async fn semantic_route(&self, router: &semantic::SemanticRouter, body: &[u8]) -> semantic::Choice {
        let messages = request_messages(body);
        let Some(text) = semantic::last_user_text(&messages) else { return router.fallback("no user text") };
        let vectors = match self.prepare_semantic(router).await {
            Ok(v) => v,
            Err(e) => return router.fallback(&e),
        };
        match self.embed(&router.embedding_model, &[text.as_str()]).await {
            Ok(mut v) if v.len() == 1 => router.choose(&v.remove(0), vectors),
            Ok(v) => router.fallback(&format!("the embedding model returned {} vectors for 1 input", v.len())),
            Err(e) => router.fallback(&format!("embedding the request failed: {e}")),
        }
    }

    /// A semantic router's utterance vectors, embedded the first time (once per config).
    async fn prepare_semantic<'r>(&self, router: &'r semantic::SemanticRouter) -> Result<&'r [Vec<Vec<f32>>], String> {
        let embed = || async {
            self.embed(&router.embedding_model, &router.utterances())
                .await
                .map_err(|e| format!("embedding the utterances failed: {e}"))
        };
        router.vectors(embed).await
    }

    /// Embeds every semantic router's utterances now, so the first request does not wait for it; a failure is
    /// logged and retried by the first request that needs them.
    pub async fn prepare_semantic_routers(&self) {
        for d in &self.config.deployments {
            if let crate::config::Target::AutoRouter { semantic: Some(router), .. } = &d.target {
                match self.prepare_semantic(router).await {
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

    /// Embeds `inputs` with the model name `model`, through llmux's own routing (order, health, fallbacks).
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
        // Boxed: this request runs through `execute`, which may reach a semantic router again.
        let response = Box::pin(self.execute(Operation::Embeddings, &body, &head)).await;
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
