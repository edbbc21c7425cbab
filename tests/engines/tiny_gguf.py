#!/usr/bin/env python3
"""Writes a tiny random-weight llama-architecture GGUF model for the real-engine tests.

The model is garbage on purpose, but a real model as far as llama.cpp is concerned: it loads, tokenizes, generates
(thousands of tokens per second on one CPU thread) and embeds. What makes it useful for testing a gateway:

* Byte-level vocabulary: `<unk>`, `<s>`, `</s>` and the 256 byte tokens `<0x00>`..`<0xFF>` (SentencePiece byte
  fallback), so the model emits arbitrary bytes, including invalid and split UTF-8 sequences.
* It never ends on its own: the logit of `</s>` is pushed far down through one constant dimension of the residual
  stream (dimension 0 carries a constant that no layer reads or writes; the output row of `</s>` weighs it at -50).
  Like a real engine without `max_tokens`, it generates until the context is full, so tests always bound
  `max_tokens`, and a long generation is available for cancellation tests.
* Deterministic: the weights come from a seeded generator, the file is byte-identical run after run, and greedy
  decoding (temperature 0) gives the same text every time.
* A chatml chat template, so `/v1/chat/completions` needs no `--chat-template` flag.
* F32 weights: greedy decoding gives the same text whatever llama.cpp's batching and prompt cache do. With
  quantized weights (`--q8`, as setup's smoke test uses) the quantized kernels round differently for a prompt
  evaluated whole or partly from the cache, and the same request can get a different answer.

About 0.44 MB (64-wide, 2 layers, 4 query heads, 2 KV heads, 128-wide FFN); 0.22 MB with --q8.

    python tiny_gguf.py OUT.gguf [--seed N] [--q8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import gguf

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX_TRAIN = 8192
HEAD_DIM = N_EMBD // N_HEAD
Q8_0 = gguf.GGMLQuantizationType.Q8_0
# Dimension 0 of the residual stream is a constant bias channel; see the module docstring.
BIAS_DIM = 0
BIAS_VALUE = 4.0
EOS_BIAS = -50.0

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def vocabulary() -> tuple[list[bytes], list[float], list[int]]:
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    scores = [0.0] * len(tokens)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    return tokens, scores, [int(t) for t in types]


def write(path: Path, seed: int = 20261130, q8: bool = False) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)

    def mat(rows: int, cols: int, std: float) -> np.ndarray:
        """A (rows, cols) weight, as numpy lays it out: GGUF/ggml see it as ne = [cols, rows]."""
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def add_q8(name: str, m: np.ndarray) -> None:
        """A layer matrix: Q8_0 with --q8 (llama.cpp's quantized matmul kernels), F32 otherwise."""
        if q8:
            w.add_tensor(name, gguf.quants.quantize(m, Q8_0), raw_dtype=Q8_0)
        else:
            w.add_tensor(name, m)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("llmux-tiny-random")
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHATML)

    embd = mat(n_vocab, N_EMBD, 1.0)
    embd[:, BIAS_DIM] = BIAS_VALUE
    w.add_tensor("token_embd.weight", embd)

    for i in range(N_LAYER):
        def reads(m: np.ndarray) -> np.ndarray:
            m[:, BIAS_DIM] = 0.0  # never read the bias channel
            return m

        def writes(m: np.ndarray) -> np.ndarray:
            m[BIAS_DIM, :] = 0.0  # never write it either
            return m

        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        add_q8(f"blk.{i}.attn_q.weight", reads(mat(N_EMBD, N_EMBD, 0.5)))
        add_q8(f"blk.{i}.attn_k.weight", reads(mat(N_HEAD_KV * HEAD_DIM, N_EMBD, 0.5)))
        add_q8(f"blk.{i}.attn_v.weight", reads(mat(N_HEAD_KV * HEAD_DIM, N_EMBD, 0.25)))
        add_q8(f"blk.{i}.attn_output.weight", writes(mat(N_EMBD, N_EMBD, 0.25)))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        add_q8(f"blk.{i}.ffn_gate.weight", reads(mat(N_FF, N_EMBD, 0.25)))
        add_q8(f"blk.{i}.ffn_up.weight", reads(mat(N_FF, N_EMBD, 0.25)))
        add_q8(f"blk.{i}.ffn_down.weight", writes(mat(N_EMBD, N_FF, 0.25)))

    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    out = mat(n_vocab, N_EMBD, 0.6)
    out[:, BIAS_DIM] = 0.0
    out[2, BIAS_DIM] = EOS_BIAS  # </s>: never chosen
    out[0, BIAS_DIM] = EOS_BIAS  # <unk>, <s>: control tokens render as nothing; keep them out too
    out[1, BIAS_DIM] = EOS_BIAS
    w.add_tensor("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--q8", action="store_true", help="Q8_0 layer matrices (quantized kernels; not deterministic "
                    "across prompt-cache states)")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    write(tmp, args.seed, args.q8)
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
