//! Ollama's own API as clients call it (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`); the
//! model-list routes (`/api/tags`, `/api/ps`, `/api/show`, …) are in `server::ollama`.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::protocol::translate::{Canonical, ChunkEncoder, Translator};

/// Which Ollama route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings` (the older single-prompt form).
    Embeddings,
}

/// One request on an Ollama route.
#[derive(Debug)]
pub struct Ollama {
    #[allow(dead_code)]
    route: Route,
}

impl Ollama {
    /// A translator for one request on `route`.
    pub fn new(route: Route) -> Self {
        Ollama { route }
    }
}

fn unsupported() -> Error {
    Error::Unsupported { message: "not yet".into(), not_implemented: true }
}

impl Translator for Ollama {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
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
    fn stream_content_type(&self) -> &'static str {
        "application/x-ndjson"
    }
    fn keepalive(&self) -> bool {
        false
    }
}
