"""The tiny default policy: a Qwen2-style model built from a config and a byte-level tokenizer built locally.

Nothing is downloaded. ``build_tiny_model(out_dir)`` writes an HF-format directory (config, safetensors
weights, ``tokenizer.json``) that both ``transformers`` and vLLM load. The tokenizer maps every byte to
one token (GPT-2's byte-to-unicode alphabet, no merges) plus a few special tokens, so any text round-trips
exactly and the vocabulary stays small enough for a CPU.

Imports torch, transformers and tokenizers; never the executor, ``ops``, ``cli`` or ``integrations``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_byte_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> Any:
    """A byte-level ``PreTrainedTokenizerFast`` (eos = pad = ``<|endoftext|>``), built locally.

    Without ``corpus``: one token per byte (256) plus ``SPECIAL_TOKENS``. With ``corpus``: a byte-level BPE
    trained on it with the ``tokenizers`` library (deterministic for a given corpus), so frequent words of
    prompts and programs become single tokens while every byte string still round-trips exactly. Digits
    are always split one per token, so numbers are spelled the same way everywhere.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    if corpus is None:
        vocab = {ch: i for i, ch in enumerate(alphabet)}
        for special in SPECIAL_TOKENS:
            vocab[special] = len(vocab)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
        tok.pre_tokenizer = pre
    else:
        tok = Tokenizer(models.BPE(fuse_unk=False))
        tok.pre_tokenizer = pre
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                      show_progress=False, min_frequency=2)
        tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=1 << 16,
    )
    fast.padding_side = "left"
    return fast


def tiny_model_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_position_embeddings: int = 2048,
    eos_token_id: int = 256,
) -> Any:
    """A Qwen2 config for a tiny model; head_dim = hidden / heads must be ≥ 32 (vLLM CPU needs it)."""
    from transformers import Qwen2Config

    head_dim = hidden_size // num_heads
    if head_dim < 32 or hidden_size % num_heads:
        raise ValueError(
            f"tiny model: hidden_size {hidden_size} / num_heads {num_heads} gives head_dim {head_dim}; "
            "it must divide evenly and be >= 32 (vLLM's CPU attention needs it): raise hidden_size or lower num_heads"
        )
    if num_heads % num_kv_heads:
        raise ValueError(f"tiny model: num_heads {num_heads} must be a multiple of num_kv_heads {num_kv_heads}")
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        torch_dtype="float32",
        use_sliding_window=False,
    )


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_position_embeddings: int = 2048,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 512,
) -> Path:
    """Write a freshly initialised tiny Qwen2 model and its byte-level tokenizer (trained on ``corpus`` when
    given, see `build_byte_tokenizer`) to ``out_dir``; return the path."""
    import torch
    from transformers import Qwen2ForCausalLM

    tok = build_byte_tokenizer(corpus, vocab_size)
    vocab = len(tok)
    padded_vocab = (vocab + 63) // 64 * 64  # a round vocabulary; the extra rows are never produced by the tokenizer
    cfg = tiny_model_config(
        padded_vocab,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tok.eos_token_id,
    )
    devnull_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).float()
    torch.random.set_rng_state(devnull_state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tok.eos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
