"""Scale-out under ``torchrun``: FSDP2 sharding, data sharding by whole groups, exact loss reduction,
full-weight gathers for the rollout engine, and distributed checkpoints.

``torchrun --nproc_per_node K microcoder-train ...`` sets ``WORLD_SIZE`` > 1; `init_distributed` then
starts the default process group (``nccl`` when the run trains on CUDA, ``gloo`` on CPU) and the trainer
shards the policy with FSDP2 (``torch.distributed.fsdp.fully_shard``: one FSDP unit per decoder layer, the
root holds the embeddings, the final norm and the (tied) LM head). With ``WORLD_SIZE`` unset or 1 nothing
here touches ``torch.distributed`` and every helper is the identity, so a single-process run is exactly
the run it was before this module existed.

Topology (one step, K ranks; ``train_batch_size`` and ``ppo_mini_batch_size`` must divide by K):

* **Prompts.** Every rank computes the step's global prompt list (the same seeded per-epoch permutation
  a single process uses) and keeps the strided slice ``idx[rank::K]``: disjoint, deterministic, and the
  union is exactly the single-process batch. Because the slice is strided, the local mini-batch ``m``
  of every rank holds exactly the prompts of the global mini-batch ``m``, so each optimiser update sees
  the same sequences as in a single process. Resume keeps the data order: the position is the global step.
* **Rollouts.** Every rank generates its own prompts' groups with its own engine (HF ``generate`` on an
  unsharded rollout copy of the policy, or a vLLM replica per rank: ``distributed_executor_backend=
  "external_launcher"``, ``data_parallel_size=K``, passed as ``VLLMEngine(llm_kwargs=vllm_llm_kwargs(ctx))``;
  not yet run on GPUs) and judges them with its own executor, overlapped with generation. A group never straddles ranks, so group
  advantages and the truncation mask are computed locally. Sampling and mask draws are seeded per rank.
* **Loss.** Token-mean: each micro-batch's loss is weighted by its tokens over the *global* mini-batch
  token count (an all-reduce), seq-mean modes by sequences over the global count; the loss is multiplied
  by K because FSDP averages gradients across ranks. The reduced gradient is then exactly the gradient of
  the single-process mini-batch loss; gradient clipping uses the global norm (DTensor).
* **Weight sync.** After the updates the full weights are gathered one tensor at a time
  (``DTensor.full_tensor``) and streamed into each rank's engine: copied into the HF rollout copy, or fed
  to ``collective_rpc("reload_weights")`` for vLLM. The whole state dict is never materialised on a rank.
* **Metrics.** Every rank holds the same number of groups, so per-sequence and per-group means reduce
  to the mean of the rank means; maxima, sums and times reduce as such (`reduce_metrics`). Only rank 0
  writes files and logs.
* **Checkpoints.** Rank 0 writes the full model in HF format (what vLLM and ``from_pretrained`` load), the
  scheduler and ``state.json`` (with ``world_size``); the optimizer state is written sharded with
  ``torch.distributed.checkpoint`` (``optimizer/``, every rank its shard); every rank writes its RNG state.
  Resume (``resume=auto`` or a path) requires the same world size and refuses a mismatch with the reason.

FSDP2 runs on CPU with gloo (torch 2.13): the 2-process test (tests/test_rl_distributed.py) checks that one
step equals a single process on the same global batch. ``torchrun --nproc_per_node 1`` is a single process.

Imports torch.distributed, transformers and ``rl.config``; never ``cli`` or ``integrations``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")

# metric reduction rules (default: mean over ranks, valid because every rank holds the same number of
# sequences and groups)
_MAX_KEYS = {"length_max"}
_SUM_KEYS = {"generated_tokens"}
_SAME_KEYS = {"step", "temperature", "lr", "grad_norm", "phase"}


@dataclass
class DistContext:
    """Who this process is in the run; ``world_size == 1`` means no ``torch.distributed`` at all."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device_type: str = "cpu"
    owns_group: bool = False
    mesh: Any = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def seed_offset(self) -> int:
        """Added to per-step sampling / mask seeds so ranks draw independently (0 on rank 0 and alone)."""
        return self.rank * 1_000_000_007

    # ---- small collectives (identity when alone) -------------------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: T) -> list[T]:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_sum(self, x: float) -> float:
        if not self.enabled:
            return x
        import torch.distributed as dist

        dev = torch.device("cuda", torch.cuda.current_device()) if self.device_type == "cuda" else torch.device("cpu")
        t = torch.tensor([float(x)], dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return float(t.item())

    def rank_slice(self, items: Sequence[T]) -> list[T]:
        """This rank's strided share ``items[rank::world_size]`` (all of it when alone)."""
        return list(items[self.rank :: self.world_size])

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def world_size_from_env() -> int:
    raw = os.environ.get("WORLD_SIZE", "")
    if not raw:
        return 1
    try:
        ws = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw!r} is not an integer; launch with torchrun --nproc_per_node K") from None
    if ws < 1:
        raise ValueError(f"WORLD_SIZE={ws} must be >= 1")
    return ws


def init_distributed(device: str) -> DistContext:
    """Join the ``torchrun`` world (``device`` "cuda" or "cpu" picks nccl / gloo); alone when WORLD_SIZE ≤ 1.

    A process group that already exists (a caller or test started it) is used and left open on close.
    """
    ws = world_size_from_env()
    if ws == 1:
        return DistContext()
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={ws} but {var} is not set: launch with "
                               "`torchrun --nproc_per_node K --no-python microcoder-train ...`, not by setting WORLD_SIZE alone")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device_type = "cuda" if device == "cuda" else "cpu"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible: "
                               "use --nproc_per_node <= the number of GPUs (one rank per GPU)")
        torch.cuda.set_device(local_rank)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo",
                                device_id=torch.device("cuda", local_rank) if device_type == "cuda" else None)
        owns = True
    if dist.get_world_size() != ws:
        raise RuntimeError(f"process group has {dist.get_world_size()} ranks but WORLD_SIZE={ws}")
    mesh = init_device_mesh(device_type, (ws,))
    return DistContext(rank=rank, world_size=ws, local_rank=local_rank, backend=dist.get_backend(),
                       device_type=device_type, owns_group=owns, mesh=mesh)


def check_config(cfg: Any, ctx: DistContext) -> None:
    """The batch arithmetic K ranks need; raises `ConfigError` naming the key and the fix."""
    if not ctx.enabled:
        return
    from microcoder_fast.rl.config import ConfigError
    k = ctx.world_size
    for key in ("train_batch_size", "ppo_mini_batch_size"):
        v = getattr(cfg, key)
        if v % k:
            raise ConfigError(f"{key}={v} is not divisible by the {k} ranks of this torchrun: every rank takes whole "
                             f"groups of every mini-batch; use a multiple of {k} or --nproc_per_node dividing {v}")
    if cfg.sft_steps and cfg.sft_batch_size % k:
        raise ConfigError(f"sft_batch_size={cfg.sft_batch_size} is not divisible by the {k} ranks: use a multiple of {k}")
    if cfg.vllm_tensor_parallel_size != 1:
        raise ConfigError("vllm_tensor_parallel_size > 1 under torchrun is not supported: every rank runs one vLLM "
                         "replica of the whole model (set vllm_tensor_parallel_size=1)")


# ------------------------------------------------------------------------------------------------------
# sharding and full-weight gathers
# ------------------------------------------------------------------------------------------------------


def _layer_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks: modules whose class is named in HF's ``_no_split_modules`` (e.g. Qwen2DecoderLayer)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names and m is not model]
    if not layers:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} to shard: it declares no "
                         "_no_split_modules; FSDP2 needs one unit per block")
    return layers


def shard_model(model: torch.nn.Module, ctx: DistContext,
                compute_dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """FSDP2 in place: ``fully_shard`` each decoder layer, then the root (embeddings, norm, LM head). With a
    bf16 ``compute_dtype`` the sharded parameters stay fp32 (master weights) and are gathered in bf16 for
    compute; gradients are reduced in fp32."""
    if not ctx.enabled:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kw = {}
    if compute_dtype != torch.float32:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in _layer_modules(model):
        fully_shard(layer, mesh=ctx.mesh, **kw)
    fully_shard(model, mesh=ctx.mesh, **kw)
    return model


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def iter_full_state(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` for every state-dict entry, one all-gather at a time.

    Collective: every rank must consume the iterator to its end in the same order.
    """
    with torch.no_grad():
        for name, t in model.state_dict().items():
            yield name, _full(t).detach()


class _LazyFullState(Mapping[str, torch.Tensor]):
    """A state-dict view whose ``items()`` gathers each tensor as it is consumed."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self._keys = list(model.state_dict().keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        return _full(self._model.state_dict()[key]).detach()

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self):  # type: ignore[override]  # noqa: ANN201
        return iter_full_state(self._model)


class FullWeights:
    """What ``engine.sync_weights`` gets for a sharded policy: ``state_dict()`` streams full tensors."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> Mapping[str, torch.Tensor]:
        return _LazyFullState(self.model)


def gather_full_state_dict(model: torch.nn.Module, ctx: DistContext, *, keep_on: str = "all",
                           cpu: bool = True) -> dict[str, torch.Tensor]:
    """The unsharded state dict; ``keep_on="main"`` keeps it on rank 0 only (others get {}). Collective."""
    out: dict[str, torch.Tensor] = {}
    keep = keep_on == "all" or ctx.is_main
    for name, t in iter_full_state(model):
        if keep:
            out[name] = t.cpu().clone() if cpu else t.clone()
    return out


@torch.no_grad()
def load_full_weights(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    """Copy the (possibly sharded) ``src``'s full weights into the unsharded ``dst`` in place. Collective."""
    dst_sd = dst.state_dict()
    for name, t in iter_full_state(src):
        if name not in dst_sd:
            raise KeyError(f"weight sync: {name!r} of the policy is not in the rollout model")
        dst_sd[name].copy_(t)


def sync_engine(engine: Any, model: torch.nn.Module, rollout_model: torch.nn.Module | None, ctx: DistContext) -> None:
    """Give the engine the policy's current weights (alone: exactly ``engine.sync_weights(model)``)."""
    if not ctx.enabled:
        engine.sync_weights(model)
    elif rollout_model is not None:  # HF engine: unsharded copy sampled from
        load_full_weights(rollout_model, model)
        engine.sync_weights(rollout_model)
    else:  # vLLM: stream the full tensors into reload_weights
        engine.sync_weights(FullWeights(model))


def vllm_llm_kwargs(ctx: DistContext) -> dict[str, Any]:
    """Extra ``vllm.LLM`` arguments for one data-parallel vLLM replica per torchrun rank."""
    if not ctx.enabled:
        return {}
    return {"distributed_executor_backend": "external_launcher", "data_parallel_size": ctx.world_size}


# ------------------------------------------------------------------------------------------------------
# gradients and metrics
# ------------------------------------------------------------------------------------------------------


def loss_scale(ctx: DistContext) -> float:
    """FSDP averages gradients over ranks; the local loss is a share of the global loss, so scale by K."""
    return float(ctx.world_size)


def clip_grad_norm(params: Any, max_norm: float) -> float:
    """``clip_grad_norm_`` that returns the global norm as a float (a DTensor under FSDP2)."""
    gn = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(_full(gn))


def reduce_metrics(m: dict[str, Any], ctx: DistContext) -> dict[str, Any]:
    """Combine one step's per-rank metrics into the run's (alone: ``m`` unchanged)."""
    if not ctx.enabled:
        return m
    all_m = ctx.all_gather_object(m)
    out: dict[str, Any] = {}
    for k, v in m.items():
        vals = [x.get(k) for x in all_m]
        nums = [x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if k in _SAME_KEYS or not nums or len(nums) != len([x for x in vals if x is not None]):
            out[k] = v
        elif k in _MAX_KEYS or k.startswith("time_"):
            out[k] = max(nums)
        elif k in _SUM_KEYS:
            out[k] = sum(nums)
        else:
            out[k] = float(sum(nums) / len(nums))
    if "generated_tokens" in out and "time_generate_s" in out:
        out["tokens_per_s"] = out["generated_tokens"] / max(out["time_generate_s"], 1e-9)
    out["world_size"] = ctx.world_size
    return out


# ------------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------------


def rng_file(ctx: DistContext) -> str:
    return "rng.pt" if ctx.rank == 0 else f"rng_rank{ctx.rank}.pt"


def save_hf_model(model: torch.nn.Module, tokenizer: Any, out_dir: Path, ctx: DistContext) -> None:
    """Full HF-format model (safetensors + config + tokenizer) written by rank 0. Collective."""
    if not ctx.enabled:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        return
    sd = gather_full_state_dict(model, ctx, keep_on="main")
    if ctx.is_main:
        _save_pretrained_from_state(model, sd, out_dir)
        tokenizer.save_pretrained(out_dir)
    ctx.barrier()


def _save_pretrained_from_state(model: torch.nn.Module, sd: dict[str, torch.Tensor], out_dir: Path) -> None:
    """``save_pretrained`` of an unsharded model of the same config holding ``sd`` (meta-initialised, no
    second copy of the weights is allocated before ``sd`` is assigned)."""
    from transformers import AutoModelForCausalLM

    cfg = model.config  # type: ignore[attr-defined]
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg, dtype=next(iter(sd.values())).dtype)
    plain.load_state_dict(sd, assign=True, strict=False)
    if getattr(cfg, "tie_word_embeddings", False):
        plain.tie_weights()
    missing = [n for n, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"checkpoint: gathered state dict lacks {missing[:3]}")
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = model.generation_config  # type: ignore[attr-defined]
    plain.save_pretrained(out_dir, safe_serialization=True)


def save_optimizer(model: torch.nn.Module, optimizer: Any, out_dir: Path, ctx: DistContext) -> None:
    """Sharded optimizer state with torch.distributed.checkpoint into ``out_dir`` (every rank). Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer)
    dcp.save({"optimizer": osd}, checkpoint_id=str(out_dir))


def load_optimizer(model: torch.nn.Module, optimizer: Any, in_dir: Path, ctx: DistContext) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer)
    state = {"optimizer": osd}
    dcp.load(state, checkpoint_id=str(in_dir))
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def check_resume_world(state: dict[str, Any], ckpt: Path, ctx: DistContext) -> None:
    saved = int(state.get("world_size", 1))
    if saved != ctx.world_size:
        raise RuntimeError(
            f"checkpoint {ckpt} was written by {saved} rank(s) but this run has {ctx.world_size}: resume with the same "
            f"`torchrun --nproc_per_node {saved}` (or without torchrun when it is 1); to change the world size start a "
            f"new run from its HF model (model={ckpt / 'model'})")



def make_rollout_copy(model_dir: str, dtype: torch.dtype, device: torch.device, policy: torch.nn.Module) -> torch.nn.Module:
    """An unsharded, frozen copy of the policy for the HF engine (loaded from ``model_dir``, then the
    policy's current full weights copied in). Collective."""
    from transformers import AutoModelForCausalLM

    copy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    for p in copy.parameters():
        p.requires_grad_(False)
    load_full_weights(copy, policy)
    return copy.eval()


def frozen_sharded_copy(model_dir: str, dtype: torch.dtype, device: torch.device, policy: torch.nn.Module,
                        ctx: DistContext) -> torch.nn.Module:
    """The KL reference model under torchrun: the policy's current weights, FSDP2-sharded, frozen. Collective."""
    ref = make_rollout_copy(model_dir, dtype, device, policy)
    return shard_model(ref, ctx).eval()
