//! Wire types of the APIs llmux speaks to clients. OpenAI Chat Completions is the canonical form: engines that
//! speak another protocol translate from and to these types.

pub mod openai;
