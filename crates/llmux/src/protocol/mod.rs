//! Wire types of the APIs llmux speaks to clients, one module per protocol. OpenAI Chat Completions is the
//! canonical form: the router, executor and providers speak it; every other client protocol is converted to
//! it and back at the edge through a [`translate::Translator`].

pub mod anthropic;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod translate;
