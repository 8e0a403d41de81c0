"""Run directories and checkpoints: where a run writes (``run_dir``, or resuming the latest
``runs/<name>-*``), which checkpoint a resume loads, and saving / loading one checkpoint (HF model,
optimiser, scheduler, RNG states, ``state.json``; written to ``.tmp`` then renamed; the oldest pruned).

Must not import the engines, the judge, the loss or ``rl.trainer``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.report import log


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """``run_dir``; with ``resume=auto`` the latest ``runs/<name>-*`` holding checkpoints; else a new
    ``runs/<name>-<UTC timestamp>``."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    if cfg.resume == "auto":
        cands = sorted(p for p in Path("runs").glob(f"{cfg.name}-*") if (p / "checkpoints").is_dir())
        if cands:
            return cands[-1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.name}-{stamp}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return None
    c = sorted(p for p in d.glob("step_*") if (p / "state.json").is_file() and not p.name.endswith(".tmp"))
    return c[-1] if c else None


def find_resume(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint ``resume`` names: none, the latest in ``run_dir`` (auto), or a checkpoint directory."""
    if cfg.resume == "none":
        return None
    if cfg.resume == "auto":
        return latest_checkpoint(run_dir)
    p = Path(cfg.resume)
    if not (p / "state.json").is_file():
        raise FileNotFoundError(f"resume={cfg.resume!r}: no checkpoint there (expected {p}/state.json); "
                                "use resume=auto or a checkpoint directory")
    return p


def save_checkpoint(run_dir: Path, state: dict[str, Any], model: Any, tokenizer: Any, optimizer: Any,
                    scheduler: Any, keep: int, ctx: rldist.DistContext) -> Path:
    """Write ``run_dir/checkpoints/step_<state['step']>``; ``state`` goes to state.json. Collective."""
    d = run_dir / "checkpoints" / f"step_{state['step']:06d}"
    tmp = d.with_name(d.name + ".tmp")
    # torchrun: model and scheduler from rank 0, optimizer sharded (DCP), RNG per rank
    if ctx.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    ctx.barrier()
    rldist.save_hf_model(model, tokenizer, tmp / "model", ctx)
    if ctx.enabled:
        rldist.save_optimizer(model, optimizer, tmp / "optimizer", ctx)
    elif ctx.is_main:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if ctx.is_main:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp / rldist.rng_file(ctx))
    ctx.barrier()
    if not ctx.is_main:
        ctx.barrier()  # rank 0 renames and prunes
        return d
    (tmp / "state.json").write_text(json.dumps({**state, **({"world_size": ctx.world_size} if ctx.enabled else {})}))
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    if keep:
        old = sorted((run_dir / "checkpoints").glob("step_*"))
        for p in old[:-keep]:
            if not p.name.endswith(".tmp"):
                shutil.rmtree(p)
    ctx.barrier()
    return d


def load_checkpoint(d: Path, model: Any, optimizer: Any, scheduler: Any, ctx: rldist.DistContext) -> dict[str, Any]:
    """Restore the optimiser, scheduler and RNG states from ``d`` (the model was loaded from ``d/model``);
    returns state.json."""
    st = json.loads((d / "state.json").read_text())
    rldist.check_resume_world(st, d, ctx)
    if ctx.enabled:
        rldist.load_optimizer(model, optimizer, d / "optimizer", ctx)
    else:
        optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=False))
    rng = torch.load(d / rldist.rng_file(ctx), weights_only=False)
    torch.random.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    log(f"resumed from {d} at step {st['step']}")
    return st
