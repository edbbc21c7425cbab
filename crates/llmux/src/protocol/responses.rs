//! OpenAI's Responses API (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`), with the bounded store
//! behind `previous_response_id`.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::translate::{Canonical, ChunkEncoder, Translator};

/// Stored responses, for `previous_response_id` and `GET /v1/responses/{id}`.
#[derive(Debug, Default)]
pub struct Store {}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }
}

/// `POST /v1/responses`, for one request.
pub struct Responses {
    #[allow(dead_code)]
    store: Arc<Store>,
}

impl Responses {
    /// A translator for one request, reading and writing `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Responses { store }
    }
}

fn unsupported() -> Error {
    Error::Unsupported { message: "not yet".into(), not_implemented: true }
}

impl Translator for Responses {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }
    fn request(&mut self, _body: &[u8], _config: &Config) -> Result<Canonical, Error> {
        Err(unsupported())
    }
    fn response(&mut self, _openai: &[u8]) -> Result<Bytes, Error> {
        Err(unsupported())
    }
    fn stream(&mut self) -> Box<dyn ChunkEncoder> {
        unimplemented!()
    }
}
