//! Ollama's model routes as its clients call them: `/api/tags`, `/api/ps`, `/api/show`, `/api/version`, and the
//! management routes llmux answers without touching an engine (`/api/pull`, `/api/delete`, …).

use axum::Router;

use super::AppState;

/// The routes, merged into the app.
pub fn routes() -> Router<AppState> {
    Router::new()
}
