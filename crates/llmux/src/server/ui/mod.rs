//! The dashboard at `/ui`: one page of plain HTML, CSS and JavaScript compiled into the binary, reading the
//! read-only JSON under `/ui/api/` (hosts and groups, the last requests and their live feed, the last hour's
//! rates). The page itself holds no data, so it is served without a key; every `/ui/api/` route wants the
//! master key when one is set, which the page asks for and keeps in the browser's session storage only.

pub mod fleet;
pub mod rates;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use http::header;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::{auth, AppState};
use crate::lifecycle::Live;
use crate::observe::Finished;

/// What the dashboard's routes share: the server's state and the rates sink.
#[derive(Clone)]
struct Ui {
    app: AppState,
    rates: Arc<rates::Rates>,
}

impl FromRef<Ui> for AppState {
    fn from_ref(ui: &Ui) -> AppState {
        ui.app.clone()
    }
}

/// The `/ui` routes; registers the rates sink on the hub (once per server).
pub fn routes(app: AppState) -> Router {
    let rates = Arc::new(rates::Rates::default());
    app.live.hub().register(rates.clone());
    let ui = Ui { app: app.clone(), rates };
    let api = Router::new()
        .route("/ui/api/fleet", get(fleet))
        .route("/ui/api/requests", get(requests))
        .route("/ui/api/rates", get(rate_report))
        .route("/ui/api/live", get(live))
        .route_layer(middleware::from_fn_with_state(app, auth::require_key));
    Router::new()
        .merge(api)
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .with_state(ui)
}

/// A file of the page, with headers that keep it from being framed or cached stale.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                 form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("assets/index.html"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

/// An API answer: JSON never cached (it is the fleet now, and it may be behind a key).
fn api(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `GET /ui/api/fleet`: hosts, groups, aliases.
async fn fleet(State(ui): State<Ui>) -> Response {
    let mut body = fleet::fleet(&ui.app.executor());
    body["now_unix_ms"] = json!(now_unix_ms());
    body["version"] = json!(env!("CARGO_PKG_VERSION"));
    // Whether the page has keys to show (a key store is open).
    body["keys"] = json!(ui.app.live.keys().is_some());
    api(body)
}

/// `GET /ui/api/requests`: the requests the journal keeps, newest first.
async fn requests(State(ui): State<Ui>) -> Response {
    let recent = ui.app.live.hub().journal().recent();
    let newest_first: Vec<&Finished> = recent.iter().rev().map(|r| &**r).collect();
    api(json!({"requests": newest_first}))
}

/// `GET /ui/api/rates`: requests and time to first token per host and minute over the last hour.
async fn rate_report(State(ui): State<Ui>) -> Response {
    api(json!(ui.rates.report(now_unix_ms())))
}

/// How often the live feed checks whether the server is shutting down (an open page must not hold the drain).
const DRAIN_CHECK: Duration = Duration::from_secs(1);

/// What the live feed holds between events.
struct Feed {
    /// The journal's requests (oldest first) to send next as one `snapshot` event: when the page connects, and
    /// again when it fell behind the feed.
    snapshot: Option<Vec<Arc<Finished>>>,
    feed: tokio::sync::broadcast::Receiver<Arc<Finished>>,
    live: Arc<Live>,
}

/// `GET /ui/api/live`: server-sent events, a `snapshot` of the kept requests (newest first), then a `request`
/// event per finished request (and a new `snapshot` if the reader fell behind). Read with `fetch()` (not `EventSource`) so the key travels in a header. Ends when
/// the server starts shutting down.
async fn live(State(ui): State<Ui>) -> Response {
    let live = ui.app.live.clone();
    // Subscribed before the snapshot is taken: a request finishing in between is sent twice, never lost (the
    // page keeps one row per id and start).
    let feed = live.hub().journal().subscribe();
    let start = Feed { snapshot: Some(live.hub().journal().recent()), feed, live };
    let events = futures_util::stream::unfold(start, |mut state| async move {
        loop {
            if let Some(snapshot) = state.snapshot.take() {
                let records: Vec<&Finished> = snapshot.iter().rev().map(|r| &**r).collect();
                let event = Event::default().event("snapshot").json_data(&records).unwrap_or_default();
                return Some((Ok::<_, Infallible>(event), state));
            }
            if state.live.is_draining() {
                return None;
            }
            match tokio::time::timeout(DRAIN_CHECK, state.feed.recv()).await {
                Err(_) => continue,
                // Too slow a reader missed some: it gets the journal again (the page keeps one row per request).
                Ok(Err(RecvError::Lagged(_))) => state.snapshot = Some(state.live.hub().journal().recent()),
                Ok(Err(RecvError::Closed)) => return None,
                Ok(Ok(record)) => {
                    if let Ok(event) = Event::default().event("request").json_data(&*record) {
                        return Some((Ok(event), state));
                    }
                }
            }
        }
    });
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}
