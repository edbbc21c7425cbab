//! `POST /utils/complexity`: what the complexity router decides for a chat request, without calling any engine
//! (so users can tune their keywords and boundaries).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::gateway::read_body;
use super::AppState;
use crate::config::Target;
use crate::error::Error;
use crate::protocol::openai::{parse_body, Operation};

#[derive(Deserialize)]
struct Ask {
    /// The complexity router to ask (default: the first in the config).
    model: Option<String>,
    #[serde(default)]
    messages: Vec<Value>,
}

/// Classifies `messages` with the named (or first) complexity router: tier, score, each dimension's matches,
/// and the model the request would go to.
pub async fn complexity(State(app): State<AppState>, request: Request) -> Response {
    let executor = app.executor();
    let body = match read_body(&executor, request.into_body()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let ask: Ask = match parse_body(&body) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let config = &executor.config;
    let found = match &ask.model {
        Some(name) => match crate::router::resolve(config, Operation::Chat, name) {
            Ok(target) => target.classifier.map(|c| (name.clone(), c)),
            Err(e) => return e.into_response(),
        },
        None => config.deployments.iter().find_map(|d| match &d.target {
            Target::AutoRouter { complexity: Some(c), .. } => Some((d.model_name.clone(), c.as_ref())),
            _ => None,
        }),
    };
    let Some((name, router)) = found else {
        let what = ask.model.as_deref().map_or("the config has no".to_owned(), |m| format!("{m:?} is not a"));
        return Error::invalid(format!("{what} auto_router/complexity_router model"), Some("model")).into_response();
    };
    let classification = router.classify(&ask.messages);
    let target = router.route(&classification, &mut fastrand::Rng::new()).map(str::to_owned);
    Json(json!({
        "model": name,
        "tier": classification.tier,
        "score": classification.score,
        "target": target,
        "classification": classification,
    }))
    .into_response()
}
