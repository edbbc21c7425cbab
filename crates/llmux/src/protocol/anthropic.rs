//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`).

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::translate::{Canonical, ChunkEncoder, Translator};

/// `POST /v1/messages`, for one request.
#[derive(Debug, Default)]
pub struct Messages {}

impl Messages {
    /// A translator for one request.
    pub fn new() -> Self {
        Messages::default()
    }
}

fn unsupported() -> Error {
    Error::Unsupported { message: "not yet".into(), not_implemented: true }
}

impl Translator for Messages {
    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
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

/// `POST /v1/messages/count_tokens`: the body's token count, estimated without calling an engine.
pub fn count_tokens(_body: &[u8]) -> Result<Bytes, Error> {
    Err(unsupported())
}
