//! A generation request with a virtual key, once its model is known: the key's model allow-list, aliases and
//! limits ([`crate::keys::Keys::admit`]) before any engine is called, and the parallel-request slot held until
//! the answer's last byte.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;

use super::auth::Who;
use crate::config::Config;
use crate::error::Error;
use crate::keys::usage::Slot;
use crate::keys::Keys;

/// What admitting a request decided: the body to send on (its model renamed by the key's aliases) and the
/// slot the answer holds.
pub struct Admitted {
    /// The model the key's aliases turned the requested one into, when they did.
    pub model: Option<String>,
    pub slot: Option<Slot>,
}

/// Admits a request for `model` from `who` (blocked, expired, over budget, the model, the limits); the master
/// key and keyless access pass untouched.
pub async fn admit(keys: Option<&Arc<Keys>>, who: &Who, config: &Config, model: &str) -> Result<Admitted, Error> {
    match (who, keys) {
        (Who::Virtual(key), Some(keys)) => {
            keys.check_usable(key)?;
            let admission = keys.admit(key, config, model).await?;
            Ok(Admitted { model: admission.model, slot: admission.slot })
        }
        _ => Ok(Admitted { model: None, slot: None }),
    }
}

/// `response` holding `slot` until its body has been sent (or dropped).
pub fn hold(response: Response, slot: Option<Slot>) -> Response {
    match slot {
        None => response,
        Some(slot) => response.map(|body| Body::new(Held { body, _slot: slot })),
    }
}

/// A body that keeps a [`Slot`] as long as it lives.
struct Held {
    body: Body,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
