//! LiteLLM's semantic auto router (`model: auto_router/<name>`): each route is a model name with example
//! utterances; the last user message is embedded through a configured embedding model group (llmux calls its own
//! router for that, so the embedding group's order, health and fallbacks apply) and compared by cosine similarity
//! with every route's utterances. The best route at or above its threshold wins; otherwise, and on any embedding
//! failure, the default model does: the router never fails a request.
//!
//! The decision itself ([`SemanticRouter::choose`]) is a pure function of the vectors; the embeddings come from
//! an [`Embedder`] the router is handed ([`SemanticRouter::route`]): llmux's own routing in production, a table in
//! tests. Utterance vectors are computed once per config (at the first request that needs them) and kept.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::Diagnostics;

/// Where a semantic router gets its vectors: `inputs` embedded with the model name `model`, one vector per input
/// in order, or why not.
pub trait Embedder: Sync {
    fn embed<'a>(
        &'a self,
        model: &'a str,
        inputs: &'a [&'a str],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, String>>;
}

/// A route's threshold when the config gives none.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// One parsed `auto_router/<name>` deployment.
#[derive(Debug)]
pub struct SemanticRouter {
    /// Routes, in config order.
    pub routes: Vec<Route>,
    /// `auto_router_default_model`.
    pub default_model: String,
    /// `auto_router_embedding_model`: the model name the utterances and requests are embedded with.
    pub embedding_model: String,
    /// Each route's utterance vectors, once computed (one computation at a time; a failed one is retried).
    vectors: tokio::sync::OnceCell<Vec<Vec<Vec<f32>>>>,
}

/// One route: a target model name and its example utterances.
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    /// The model name requests matching this route go to.
    pub name: String,
    /// Examples of requests that belong here.
    pub utterances: Vec<String>,
    /// Minimum cosine similarity to match (default [`DEFAULT_THRESHOLD`]).
    #[serde(default)]
    pub score_threshold: Option<f64>,
    /// Free text (LiteLLM's `description`).
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Deserialize)]
struct RouterFile {
    routes: Vec<Route>,
}

/// What the router decided, for `x-llmux-route`.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The model name chosen.
    pub model: String,
    /// The matched route's best similarity, when a route matched.
    pub score: Option<f64>,
    /// Why the default model was chosen, when it was.
    pub fallback_reason: Option<String>,
}

impl SemanticRouter {
    /// Parses a deployment's `litellm_params`; problems go into `diags` at paths relative to `litellm_params` (the
    /// config loader files them under the deployment's path). `is_name` says whether a model name exists; `read`
    /// gives the text of the file `auto_router_config_path` names (the loader read it, so reload watches it).
    pub fn from_params(
        params: &Map<String, Value>,
        is_name: &dyn Fn(&str) -> bool,
        read: &dyn Fn(&str) -> Result<String, String>,
        diags: &mut Diagnostics,
    ) -> Option<SemanticRouter> {
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let file: Option<RouterFile> = match (params.get("auto_router_config"), text("auto_router_config_path")) {
            (Some(Value::String(json)), _) => parse(json, "auto_router_config", diags),
            (Some(Value::Object(map)), _) => serde_json::from_value(Value::Object(map.clone()))
                .map_err(|e| diags.error("auto_router_config", e.to_string()))
                .ok(),
            (Some(other), _) if !other.is_null() => {
                diags.error("auto_router_config", "must be the router JSON (a mapping or a JSON string)");
                None
            }
            (_, Some(path)) => match read(&path) {
                Ok(json) => parse(&json, "auto_router_config_path", diags),
                Err(e) => {
                    diags.error("auto_router_config_path", format!("cannot read {path}: {e}"));
                    None
                }
            },
            _ => {
                diags.error("auto_router_config", "missing: give auto_router_config or auto_router_config_path");
                None
            }
        };
        let mut required = |key: &str| match text(key) {
            Some(name) if is_name(&name) => Some(name),
            Some(name) => {
                diags.error(key, format!("{name:?} is not a model_name or alias of this config"));
                None
            }
            None => {
                diags.error(key, "missing");
                None
            }
        };
        let default_model = required("auto_router_default_model");
        let embedding_model = required("auto_router_embedding_model");
        let file = file?;
        for (i, route) in file.routes.iter().enumerate() {
            if !is_name(&route.name) {
                diags.error(
                    format!("auto_router_config.routes[{i}].name"),
                    format!("{:?} is not a model_name or alias", route.name),
                );
            }
            if route.utterances.is_empty() {
                diags.error(format!("auto_router_config.routes[{i}].utterances"), "needs at least one utterance");
            }
        }
        Some(SemanticRouter {
            routes: file.routes,
            default_model: default_model?,
            embedding_model: embedding_model?,
            vectors: tokio::sync::OnceCell::new(),
        })
    }

    /// Where the request whose messages are `messages` goes. Never fails: without user text, or when an
    /// embedding call fails, the default model is the answer (with why).
    pub async fn route(&self, messages: &[Value], embedder: &dyn Embedder) -> Choice {
        let Some(text) = last_user_text(messages) else { return self.fallback("no user text") };
        let vectors = match self.prepare(embedder).await {
            Ok(v) => v,
            Err(e) => return self.fallback(&e),
        };
        match embedder.embed(&self.embedding_model, &[text.as_str()]).await {
            Ok(mut v) if v.len() == 1 => self.choose(&v.remove(0), vectors),
            Ok(v) => self.fallback(&format!("the embedding model returned {} vectors for 1 input", v.len())),
            Err(e) => self.fallback(&format!("embedding the request failed: {e}")),
        }
    }

    /// The utterance vectors, embedded through `embedder` the first time (once per config).
    pub async fn prepare(&self, embedder: &dyn Embedder) -> Result<&[Vec<Vec<f32>>], String> {
        let utterances = self.utterances();
        let embed = || async {
            embedder
                .embed(&self.embedding_model, &utterances)
                .await
                .map_err(|e| format!("embedding the utterances failed: {e}"))
        };
        self.vectors(embed).await
    }

    /// Every utterance, route after route: what has to be embedded once.
    pub fn utterances(&self) -> Vec<&str> {
        self.routes.iter().flat_map(|r| r.utterances.iter().map(String::as_str)).collect()
    }

    /// The utterance vectors per route, computed by `embed` (the vectors of [`SemanticRouter::utterances`], in
    /// that order) the first time: concurrent callers wait for the one computation; after a failure the next
    /// caller tries again.
    pub async fn vectors<F, Fut>(&self, embed: F) -> Result<&[Vec<Vec<f32>>], String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Vec<f32>>, String>>,
    {
        let vectors = self.vectors.get_or_try_init(|| async { self.split(embed().await?) }).await?;
        Ok(vectors.as_slice())
    }

    /// Splits the vectors of every utterance per route.
    fn split(&self, flat: Vec<Vec<f32>>) -> Result<Vec<Vec<Vec<f32>>>, String> {
        let expected = self.routes.iter().map(|r| r.utterances.len()).sum::<usize>();
        if flat.len() != expected {
            return Err(format!("{} vectors for {expected} utterances", flat.len()));
        }
        let mut flat = flat.into_iter();
        Ok(self.routes.iter().map(|r| flat.by_ref().take(r.utterances.len()).collect()).collect())
    }

    /// The route for a request whose text embeds as `query`: the route with the highest best-utterance
    /// similarity among those at or above their threshold; the default model when none is.
    pub fn choose(&self, query: &[f32], vectors: &[Vec<Vec<f32>>]) -> Choice {
        let best = self
            .routes
            .iter()
            .zip(vectors)
            .filter_map(|(route, vs)| {
                let score = vs.iter().map(|v| cosine(query, v)).fold(f64::NEG_INFINITY, f64::max);
                (score >= route.score_threshold.unwrap_or(DEFAULT_THRESHOLD)).then_some((route, score))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((route, score)) => Choice { model: route.name.clone(), score: Some(score), fallback_reason: None },
            None => self.fallback("no route reached its threshold"),
        }
    }

    /// The default model, with why.
    pub fn fallback(&self, why: &str) -> Choice {
        Choice { model: self.default_model.clone(), score: None, fallback_reason: Some(why.to_owned()) }
    }
}

fn parse(json: &str, at: &str, diags: &mut Diagnostics) -> Option<RouterFile> {
    serde_json::from_str(json).map_err(|e| diags.error(at, format!("not the router JSON: {e}"))).ok()
}

/// Cosine similarity; 0 for a zero or mismatched vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The text of the last user message (string content, or the text parts of a content list).
pub fn last_user_text(messages: &[Value]) -> Option<String> {
    messages.iter().rev().filter(|m| m.get("role").and_then(Value::as_str) == Some("user")).find_map(|m| {
        let text = match m.get("content")? {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| {
                    (p.get("type").and_then(Value::as_str) == Some("text")).then(|| p.get("text")?.as_str()).flatten()
                })
                .collect::<Vec<_>>()
                .join("\n"),
            _ => return None,
        };
        (!text.trim().is_empty()).then_some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn router() -> SemanticRouter {
        let params = json!({
            "auto_router_config": {"routes": [
                {"name": "coder", "utterances": ["write code", "fix this bug"], "score_threshold": 0.8},
                {"name": "chat", "utterances": ["hello there"]},
            ]},
            "auto_router_default_model": "fallback",
            "auto_router_embedding_model": "embed",
        });
        let mut diags = Diagnostics::default();
        let r = SemanticRouter::from_params(
            params.as_object().unwrap(),
            &|_| true,
            &|_| Err("no files".into()),
            &mut diags,
        );
        assert!(diags.iter().next().is_none(), "{diags}");
        r.unwrap()
    }

    #[tokio::test]
    async fn the_best_route_over_its_threshold_wins_else_the_default() {
        let r = router();
        assert_eq!(r.utterances(), ["write code", "fix this bug", "hello there"]);
        assert!(r.vectors(|| async { Ok(vec![vec![1.0]]) }).await.is_err(), "one vector per utterance");
        let flat = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0]];
        let v = r.vectors(|| async { Ok(flat) }).await.unwrap();
        assert_eq!(r.choose(&[1.0, 0.05], v).model, "coder");
        assert_eq!(r.choose(&[0.1, 1.0], v).model, "chat");
        // 45°: cosine 0.707 — under coder's 0.8, over chat's default 0.5 → chat.
        assert_eq!(r.choose(&[1.0, 1.0], v).model, "chat");
        // Orthogonal to everything: the default model.
        let none = r.choose(&[-1.0, -1.0], v);
        assert_eq!((none.model.as_str(), none.score), ("fallback", None));
        let again = r.vectors(|| async { Err("computed once".to_owned()) }).await.unwrap();
        assert_eq!(again.len(), 2);
    }

    /// Vectors by text from a table; counts the calls.
    struct Table(std::collections::HashMap<&'static str, Vec<f32>>, std::sync::atomic::AtomicUsize);

    impl Embedder for Table {
        fn embed<'a>(
            &'a self,
            model: &'a str,
            inputs: &'a [&'a str],
        ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, String>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let found = inputs.iter().map(|i| self.0.get(i).cloned().ok_or(format!("{model} cannot embed {i:?}")));
            Box::pin(std::future::ready(found.collect()))
        }
    }

    fn table(extra: &[(&'static str, Vec<f32>)]) -> Table {
        let mut t: std::collections::HashMap<_, _> =
            [("write code", vec![1.0, 0.0]), ("fix this bug", vec![0.9, 0.1]), ("hello there", vec![0.0, 1.0])].into();
        t.extend(extra.iter().cloned());
        Table(t, Default::default())
    }

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"role": "user", "content": text})]
    }

    #[tokio::test]
    async fn a_request_goes_where_its_embedding_is_closest_and_utterances_are_embedded_once() {
        let r = router();
        let embedder = table(&[("refactor it", vec![1.0, 0.05]), ("hi!", vec![0.1, 1.0])]);
        assert_eq!(r.route(&user("refactor it"), &embedder).await.model, "coder");
        assert_eq!(r.route(&user("hi!"), &embedder).await.model, "chat");
        // The utterances once, then one call per request.
        assert_eq!(embedder.1.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn every_embedding_failure_falls_back_to_the_default_model_with_why() {
        let r = router();
        let broken = Table(Default::default(), Default::default());
        let c = r.route(&user("anything"), &broken).await;
        assert_eq!(c.model, "fallback");
        assert!(
            c.fallback_reason.as_deref().is_some_and(|w| w.starts_with("embedding the utterances failed")),
            "{c:?}"
        );
        let embedder = table(&[]);
        let c = r.route(&user("unknown text"), &embedder).await;
        assert_eq!(c.model, "fallback");
        assert!(c.fallback_reason.as_deref().is_some_and(|w| w.starts_with("embedding the request failed")), "{c:?}");
        let c = r.route(&[json!({"role": "system", "content": "only a system prompt"})], &embedder).await;
        assert_eq!(c.fallback_reason.as_deref(), Some("no user text"));
    }

    #[test]
    fn the_last_user_text_is_what_is_embedded() {
        let messages = [
            json!({"role": "system", "content": "be nice"}),
            json!({"role": "user", "content": "first"}),
            json!({"role": "assistant", "content": "ok"}),
            json!({"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]}),
        ];
        assert_eq!(last_user_text(&messages).as_deref(), Some("second"));
        assert_eq!(last_user_text(&messages[..1]), None);
    }

    #[test]
    fn config_problems_name_their_key() {
        let params = json!({"auto_router_config": "{not json", "auto_router_default_model": "nope"});
        let mut diags = Diagnostics::default();
        let r = SemanticRouter::from_params(
            params.as_object().unwrap(),
            &|n| n != "nope",
            &|_| Err("x".into()),
            &mut diags,
        );
        assert!(r.is_none());
        let paths: Vec<&str> = diags.errors().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["auto_router_config", "auto_router_default_model", "auto_router_embedding_model"]);
    }
}
