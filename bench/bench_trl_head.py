"""Benchmark one GRPO update step inside TRL 1.16: TRL's own LM head and loss against ours (integrations.trl).

"TRL" is ``trl.GRPOTrainer`` as shipped: the tiled plain-torch LM head it patches into the model
(``add_fused_lm_head``: per-token log-probs and entropy without the full logits) and its loss. "ours" is
``MicroCoderGRPOTrainer``: ``ops.linear_token_logprobs`` as the head (Triton on CUDA, chunked torch on CPU) and
``ops.grpo_loss``. Both run ``_compute_loss`` + ``backward`` on the same fixed batch of a Qwen2-style model with a
real vocabulary (151,936 by default, randomly initialised from a config: nothing is downloaded), fp32,
loss_type dapo (TRL's default), T = 1.2. Each provider runs in a fresh process: one warm-up step, then the
measured step (wall time, and the process's CPU time, which a busy shared host disturbs less); peak extra
resident memory is VmHWM after /proc/self/clear_refs minus VmRSS before the measured
step (gradient buffers already exist then, so it is the step's activations and head workspace), and on CUDA
``max_memory_allocated`` over the measured step. The loss of the two providers is printed to show they agree.

    python bench/bench_trl_head.py [--tokens 2048] [--batch 4] [--vocab 151936] [--hidden 512] [--layers 1] [--out F]

On a shared host run it under a memory cap (a cgroup v1 memory limit); the defaults peak near 3 GB (TRL) and 1 GB (ours) above the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)

from _common import child_row, emit, markdown_table, status_bytes  # noqa: E402

T = 1.2
PROVIDERS = ("TRL", "ours")


def child(provider: str, batch: int, length: int, vocab: int, hidden: int, layers: int, device: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from datasets import Dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from microcoder_fast.integrations.trl import MicroCoderGRPOTrainer
    from microcoder_fast.rl.model import build_byte_tokenizer

    torch.manual_seed(0)
    heads = max(1, hidden // 64)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4 * length,
                      tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    model = Qwen2ForCausalLM(cfg).float().to(device)
    tok = build_byte_tokenizer()
    args = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=device == "cpu", report_to="none", bf16=False,
                      per_device_train_batch_size=batch, num_generations=batch, max_completion_length=length,
                      temperature=T, epsilon_high=0.28, loss_type="dapo")
    cls = GRPOTrainer if provider == "TRL" else MicroCoderGRPOTrainer
    tr = cls(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)], args=args,
             train_dataset=Dataset.from_list([{"prompt": "x"}] * batch), processing_class=tok)
    tr.current_gradient_accumulation_steps = 1
    g = torch.Generator().manual_seed(1)
    prompt = 64
    inputs = {
        "prompt_ids": torch.randint(2, vocab, (batch, prompt), generator=g).to(device),
        "prompt_mask": torch.ones(batch, prompt, dtype=torch.long, device=device),
        "completion_ids": torch.randint(2, vocab, (batch, length), generator=g).to(device),
        "completion_mask": torch.ones(batch, length, dtype=torch.long, device=device),
        "advantages": torch.randn(batch, generator=g).to(device),
    }
    inputs["num_items_in_batch"] = inputs["completion_mask"].sum().float()
    with torch.no_grad():
        seq = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        am = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        cur, _, _ = tr._get_per_token_logps_and_entropies(tr.model, seq, am, length)
    inputs["old_per_token_logps"] = cur + 0.1 * torch.randn(cur.shape, generator=g).to(device)
    tr.model.train()

    def step() -> float:
        loss = tr._compute_loss(tr.model, dict(inputs))
        loss.backward()
        return loss.item()

    step()  # warm-up: allocates the gradient buffers
    tr.model.zero_grad(set_to_none=False)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_bytes("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    loss = step()
    if device == "cuda":
        torch.cuda.synchronize()
    ms, cpu_s = (time.perf_counter() - t0) * 1e3, time.process_time() - c0
    row = dict(provider=provider, batch=batch, tokens=batch * length, vocab=vocab, hidden=hidden, layers=layers,
               ms=ms, cpu_s=cpu_s, extra_gib=(status_bytes("VmHWM") - base) / 2**30, loss=loss)
    if device == "cuda":
        row["cuda_extra_gib"] = (torch.cuda.max_memory_allocated() - base_cuda) / 2**30
    return row


def table(rows: list[dict], title: str) -> str:
    def keys(r: dict) -> list[str]:
        return [str(r["vocab"]), str(r["tokens"]), r["provider"]]

    def values(r: dict) -> list[str]:
        mem = f"{r['cuda_extra_gib']:.2f}" if "cuda_extra_gib" in r else f"{r['extra_gib']:.2f}"
        return [f"{r['ms']:.0f}", f"{r['cpu_s']:.1f}", mem, f"{r['loss']:.6f}"]

    return markdown_table(title, ["vocab", "completion tokens", "head + loss", "wall ms (fwd+bwd)", "CPU s",
                                  "peak extra GiB", "loss"], rows, keys, values)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        print(json.dumps(child(a[0], *(int(x) for x in a[1:6]), a[6])))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="completions in the step")
    p.add_argument("--tokens", type=int, default=512, help="completion length (tokens per completion)")
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    rows = []
    for provider in PROVIDERS:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", provider, str(args.batch), str(args.tokens),
               str(args.vocab), str(args.hidden), str(args.layers), device]
        rows.append(child_row(cmd, provider=provider, tokens=args.batch * args.tokens, vocab=args.vocab))
    card = (torch.cuda.get_device_name() if device == "cuda"
            else f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    emit(table(rows, f"one GRPO step in TRL's GRPOTrainer (dapo, fp32, T = {T}), Qwen2 {args.layers} layer(s), "
                     f"hidden {args.hidden}, {card}, torch {torch.__version__}"), args.out)


if __name__ == "__main__":
    main()
