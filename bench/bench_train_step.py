"""One GRPO update (forward, backward, AdamW step) of a Qwen3-0.6B-shaped policy per loss path
(``hidden``, ``fused``, ``logits``; rl/policy.py), 8 responses × {256, 1024, 2048} tokens.

The model is built from Qwen3-0.6B's config (hidden 1024, vocab 151,936, tied embeddings, 16 heads / 8 KV
heads of 128, MLP 3072), random weights, no download; ``--layers`` cuts the 28 decoder layers so it runs on
a CPU. Every row runs in a fresh process (``--row``); on Linux with a writable cgroup v1 memory controller
each row runs inside a memory cgroup capped at ``--mem-limit-gb`` (default 12), so a row that needs more is
killed there and reported as OOM, never the host. Memory: CPU peak RSS of the row's process (VmHWM) and its
rise during the update; CUDA ``max_memory_allocated``. Loss and grad-norm are compared with the ``logits``
row of the same length (the oracle); when that row ran out of memory the comparison is with ``fused``.

    python bench/bench_train_step.py --layers 2 --out bench/results/cpu-train_step.md
    python bench/bench_train_step.py --out bench/results/gpu-train_step.md   # CUDA: all 28 layers, bf16
    python bench/bench_train_step.py --old-pass 5        # the old-log-prob pass saved per default-run step
    python bench/bench_train_step.py --write-model DIR --layers 2 --hidden 128   # a model for microcoder-train
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from _common import emit, status_bytes

PATHS = ("logits", "fused", "hidden")
CGROUP_ROOT = "/sys/fs/cgroup/memory"


def qwen3_06b_config(layers: int, hidden: int = 1024):  # noqa: ANN201
    """Qwen3-0.6B's config with ``layers`` decoder layers; ``hidden`` < 1024 shrinks the width (heads of 32)."""
    from transformers import Qwen3Config

    if hidden == 1024:
        heads, kv, head_dim, mlp = 16, 8, 128, 3072
    else:
        heads, kv, head_dim, mlp = hidden // 32, max(1, hidden // 64), 32, 3 * hidden
    return Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
                       max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True)


def write_model(out_dir: str, layers: int, hidden: int, seed: int) -> None:
    """An HF directory for ``microcoder-train model=DIR``: the Qwen3-shaped model (random weights, vocab
    151,936) with the byte-level tokenizer of rl/model.py, whose few hundred tokens leave most rows unused
    (as Qwen pads 151,643 tokens to 151,936 rows)."""
    from transformers import Qwen3ForCausalLM

    from microcoder_fast.rl.model import build_byte_tokenizer

    tok = build_byte_tokenizer()
    cfg = qwen3_06b_config(layers, hidden)
    cfg.eos_token_id = cfg.bos_token_id = cfg.pad_token_id = tok.eos_token_id
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg).float()
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tok.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    print(f"wrote {out_dir}: Qwen3 shape, {layers} layers, hidden {hidden}, vocab 151936 (tied), tokenizer {len(tok)}")


def run_row(path: str, length: int, layers: int, hidden: int, prompt: int, n: int, dtype: str, seed: int) -> dict:
    """One update in this process; returns the row."""
    from transformers import Qwen3ForCausalLM

    from microcoder_fast.rl.batching import make_batch
    from microcoder_fast.rl.config import load_config
    from microcoder_fast.rl.policy import set_compute_dtype, set_loss_path
    from microcoder_fast.rl.update import grpo_update

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(qwen3_06b_config(layers, hidden)).float().to(dev)
    model.train()
    set_compute_dtype(model, torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    set_loss_path(model, path)
    g = torch.Generator().manual_seed(seed + 1)
    prompts = torch.randint(0, 151643, (n, prompt), generator=g).tolist()
    responses = torch.randint(0, 151643, (n, length), generator=g).tolist()
    b = make_batch(prompts, responses, pad=0)
    adv = torch.linspace(-1.0, 1.0, n) + 0.3  # not balanced: the loss is not 0
    cfg = load_config(None, {"preset": "none", "train_batch_size": "1", "group_size": str(n),
                             "ppo_mini_batch_size": "1", "ppo_micro_batch_size": str(n),
                             "max_response_length": str(length), "lr": "1e-6", "grad_clip": "1e9"})
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    old = torch.zeros(b.responses.shape)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = status_bytes("VmRSS")
    t0 = time.perf_counter()
    metrics, grad_norms = grpo_update(model, opt, None, b, old, adv, None, 1.0, cfg, fill_first_old=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else status_bytes("VmHWM")
    return {"path": path, "length": length, "time_s": secs, "peak_gb": peak / 1e9, "rise_gb": (peak - base) / 1e9,
            "loss": sum(metrics["pg_loss"]), "grad_norm": grad_norms[0], "device": dev.type}


def old_pass(reps: int) -> str:
    """Seconds per RL step of the old-policy log-prob pass in the default run's shape (preset embedded: tiny
    model, 16 prompts × 8 responses of 48 tokens, 2 updates per step): every row recomputed
    (``recompute_old_logp=true``, as before) vs only the rows after the first mini-batch (the default)."""
    import tempfile

    from transformers import AutoModelForCausalLM

    from microcoder_fast.data import load_embedded
    from microcoder_fast.rl.batching import make_batch
    from microcoder_fast.rl.config import load_config
    from microcoder_fast.rl.dataset import encode_prompts, render_prompt, sft_target
    from microcoder_fast.rl.model import build_tiny_model
    from microcoder_fast.rl.policy import set_loss_path
    from microcoder_fast.rl.update import old_logprobs

    cfg = load_config(None, {})
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    probs = load_embedded("train")
    with tempfile.TemporaryDirectory() as d:
        corpus = [render_prompt(p, None, False) for p in probs] + [sft_target(p) for p in probs if p.solution]
        build_tiny_model(d, corpus=corpus, vocab_size=cfg.tiny_vocab_size, hidden_size=cfg.tiny_hidden_size,
                         num_layers=cfg.tiny_num_layers, num_heads=cfg.tiny_num_heads,
                         num_kv_heads=cfg.tiny_num_kv_heads, intermediate_size=cfg.tiny_intermediate_size)
        model = AutoModelForCausalLM.from_pretrained(d)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(d)
    set_loss_path(model, cfg.loss_path)
    _, prompts = encode_prompts(probs, tok, False, cfg.max_prompt_length, "train")
    g = torch.Generator().manual_seed(0)
    rows = [prompts[i] for i in range(cfg.train_batch_size) for _ in range(cfg.group_size)]
    resp = [torch.randint(0, 300, (cfg.max_response_length,), generator=g).tolist() for _ in rows]
    b = make_batch(rows, resp, tok.pad_token_id)
    out = {}
    for recompute in (True, False):
        c = load_config(None, {"recompute_old_logp": str(recompute)})
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            old_logprobs(model, b, cfg.temperature, c)
            ts.append(time.perf_counter() - t0)
        out[recompute] = sorted(ts)[len(ts) // 2]
    return (f"## Old-policy log-prob pass per RL step, default run shape ({len(rows)} rows, prompts <= "
            f"{b.prompt_width} tokens, responses {cfg.max_response_length}, {cfg.train_batch_size // cfg.ppo_mini_batch_size}"
            f" updates per step, loss_path {cfg.loss_path}, {torch.get_num_threads()} thread(s); median of {reps})\n\n"
            "| old-logp pass | seconds per step |\n|---|---|\n"
            f"| every row (recompute_old_logp=true, as before) | {out[True]:.2f} |\n"
            f"| rows after the first mini-batch (default) | {out[False]:.2f} |\n"
            f"| saved per step | {out[True] - out[False]:.2f} ({(out[True] - out[False]) / out[True]:.0%}) |\n")


def _cgroup(name: str, limit_gb: float) -> str | None:
    """A fresh memory cgroup capped at ``limit_gb`` (swap too where the kernel accounts it), or None."""
    d = os.path.join(CGROUP_ROOT, name)
    try:
        if os.path.isdir(d):
            os.rmdir(d)
        os.makedirs(d)
        limit = str(int(limit_gb * 2**30))  # GiB
        with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
            f.write(limit)
        for knob, value in (("memory.memsw.limit_in_bytes", limit), ("memory.swappiness", "0")):
            try:
                with open(os.path.join(d, knob), "w") as f:
                    f.write(value)
            except OSError:
                pass
        return d
    except OSError:
        return None


def child(path: str, length: int, args: argparse.Namespace) -> dict:
    keys = {"path": path, "length": length}
    cmd = [sys.executable, os.path.abspath(__file__), "--row", f"{path},{length}", "--layers", str(args.layers),
           "--hidden", str(args.hidden),
           "--prompt", str(args.prompt), "--n", str(args.n), "--dtype", args.dtype, "--seed", str(args.seed)]
    cg = _cgroup(f"{args.cgroup}_{path}_{length}", args.mem_limit_gb) if not torch.cuda.is_available() else None
    if cg is not None:  # join the cgroup, then become the row
        cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    oom = False
    if cg is not None:
        try:
            with open(os.path.join(cg, "memory.failcnt")) as f:
                oom = proc.returncode != 0 and int(f.read()) > 0
            os.rmdir(cg)
        except OSError:
            pass
    if proc.returncode == 0:
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    elif oom or proc.returncode in (-9, 137) or "out of memory" in proc.stderr.lower():
        row = dict(keys, oom=f"OOM (killed at the {args.mem_limit_gb:g} GiB cap)" if cg else "OOM")
    else:
        row = dict(keys, error=(proc.stderr.strip().splitlines() or ["?"])[-1][:100])
    print(json.dumps(row), flush=True)
    if args.rows:
        with open(args.rows, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def table(rows: list[dict], args: argparse.Namespace) -> str:
    dev = "CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    out = [f"## One GRPO update, Qwen3-0.6B shape ({args.layers} layers), {args.n} responses, prompt {args.prompt} "
           f"tokens, {args.dtype}, {dev}", "",
           "| response tokens | loss_path | time (s) | peak memory (GB) | rise in the update (GB) | loss − ref | "
           "grad-norm − ref (rel.) | ref |", "|---|---|---|---|---|---|---|---|"]
    for length in sorted({r["length"] for r in rows}):
        at = {r["path"]: r for r in rows if r["length"] == length}
        ref_name = next((p for p in ("logits", "fused") if p in at and "loss" in at[p]), None)
        ref = at.get(ref_name) if ref_name else None
        for p in PATHS:
            r = at.get(p)
            if r is None:
                continue
            if "loss" not in r:
                out.append(f"| {length} | {p} | | {r.get('oom') or 'failed: ' + r.get('error', '?')} | | | | |")
                continue
            dl = dg = "n/a"
            if ref is not None and ref is not r:
                dl = f"{abs(r['loss'] - ref['loss']):.1e}"
                dg = f"{abs(r['grad_norm'] - ref['grad_norm']) / max(ref['grad_norm'], 1e-30):.1e}"
            ref_cell = "(ref)" if ref is r else ref_name or "none (logits and fused out of memory)"
            out.append(f"| {length} | {p} | {r['time_s']:.1f} | {r['peak_gb']:.2f} | {r['rise_gb']:.2f} | {dl} | {dg} | "
                       f"{ref_cell} |")
    memo = "CUDA max_memory_allocated" if torch.cuda.is_available() else "peak RSS (VmHWM) of the row's own process"
    return "\n".join(out) + f"\n\nMemory: {memo}. One update per row, each in a fresh process.\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=28, help="decoder layers (28 in Qwen3-0.6B; 2 on a CPU)")
    ap.add_argument("--lengths", default="256,1024,2048", help="response tokens per row, comma-separated")
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens per sequence")
    ap.add_argument("--n", type=int, default=8, help="responses (one micro-batch)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                    help="compute dtype (default: bfloat16 on CUDA, float32 on CPU); master weights stay fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-limit-gb", type=float, default=12.0, help="memory cgroup cap per row in GiB (CPU)")
    ap.add_argument("--cgroup", default="bench_train_step", help="cgroup name prefix under " + CGROUP_ROOT)
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    ap.add_argument("--write-model", default=None, metavar="DIR",
                    help="write the model (with --layers and --hidden) and a byte-level tokenizer to DIR and exit")
    ap.add_argument("--old-pass", type=int, default=0, metavar="REPS",
                    help="instead: time the old-policy log-prob pass of a default-run step, skipped vs recomputed")
    ap.add_argument("--hidden", type=int, default=1024, help="hidden size (1024 in Qwen3-0.6B)")
    ap.add_argument("--rows", default=None, metavar="FILE", help="also append each row as JSON to FILE")
    ap.add_argument("--table-from", default=None, metavar="FILE", help="only print the table of the rows in FILE")
    ap.add_argument("--row", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_model:
        write_model(args.write_model, args.layers, args.hidden, args.seed)
        return
    if args.old_pass:
        emit(old_pass(args.old_pass), args.out)
        return
    args.dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    if args.row:
        path, length = args.row.split(",")
        print(json.dumps(run_row(path, int(length), args.layers, args.hidden, args.prompt, args.n, args.dtype, args.seed)))
        return
    if args.table_from:
        with open(args.table_from) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        rows = [child(p, int(length), args) for length in args.lengths.split(",") for p in args.paths.split(",")]
    emit(table(rows, args), args.out)


if __name__ == "__main__":
    main()
