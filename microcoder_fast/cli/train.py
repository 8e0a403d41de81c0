"""`microcoder-train`: MicroCoder-GRPO training, the temperature probe, and plots.

    microcoder-train [--config FILE.yaml] [key=value ...]             train (no arguments: the embedded demo)
    microcoder-train probe-temperature [--config FILE.yaml] [key=value ...]
    microcoder-train plot RUN_DIR                                      PNG curves into RUN_DIR/plots
    microcoder-train --help-config                                     every key: meaning, values, default
    torchrun --nproc_per_node K --no-python microcoder-train ...      K ranks, FSDP2 (see rl/distributed.py)

Every run starts by printing the preset in use and the keys that differ from the defaults, with where each
came from. A user-caused error (a bad key or value, a missing data file, nothing to resume) is one line on
stderr and exit status 2, before any run directory is created. Ctrl-C prints one line: the last checkpoint and
the command that resumes from it (exit status 130).

Parsing and printing only: imports ``rl``; the judge and the kernels come through it. Nothing imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from typing import Any

PROG = "microcoder-train"


def _parse(argv: list[str], prog: str) -> tuple[str | None, list[str]]:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML file of config keys (see --help-config)")
    ap.add_argument("--help-config", action="store_true",
                    help="every config key: meaning, accepted values, default, what the no-argument run sets")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, applied after the file")
    args = ap.parse_args(argv)
    if args.help_config:
        from microcoder_fast.rl.config import describe_keys

        try:
            print(describe_keys(), flush=True)
        except BrokenPipeError:  # `--help-config | head`: the reader left; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
    return args.config, args.overrides


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks


def _fail(prog: str, msg: str) -> SystemExit:
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return SystemExit(2)


def _config(argv: list[str], prog: str):  # noqa: ANN202
    """The resolved config, after printing the preset and the keys that differ from the defaults; a config
    error or a missing input file exits 2 with one line."""
    from microcoder_fast.rl.config import ConfigError, check_inputs, describe_resolution, parse_overrides, resolve_config

    config_file, items = _parse(argv, prog)
    try:
        cfg, sources = resolve_config(config_file, parse_overrides(items))
        check_inputs(cfg)
    except ConfigError as e:
        raise _fail(prog, f"config: {e}") from None
    if _is_main_rank():
        print(describe_resolution(cfg, sources), flush=True)
    return cfg


def _env(cfg: Any) -> None:
    """Environment for vLLM in this process on CPU (harmless when vLLM is absent or on GPU). The KV-cache size
    comes from the config key ``vllm_kv_cache_space_gb``: vLLM reads the variable when its engine starts."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm_kv_cache_space_gb)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resume_command(argv: list[str], run_dir: Any, checkpoint: Any) -> str:
    """The command line that continues this run from ``checkpoint``: the same arguments, with ``run_dir`` and
    ``resume`` pointing at the run."""
    keep = [a for a in argv if not a.startswith(("run_dir=", "resume=", "run-dir="))]
    return shlex.join([PROG, *keep, f"run_dir={run_dir}", f"resume={checkpoint}"])


def train_main(argv: list[str]) -> int:
    cfg = _config(argv, PROG)
    _env(cfg)
    from microcoder_fast.rl.config import ConfigError
    from microcoder_fast.rl.checkpoint import latest_checkpoint
    from microcoder_fast.rl.report import eval_kinds, log
    from microcoder_fast.rl.trainer import Trainer

    try:
        trainer = Trainer(cfg)
    except ConfigError as e:
        raise _fail(PROG, f"config: {e}") from None
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted while setting up; nothing was trained", file=sys.stderr)
        return 130
    try:
        log(f"run directory: {trainer.run_dir} (resolved config in config.yaml)")
        if cfg.resume == "auto" and trainer.ckpt_to_load is None:
            log(f"resume=auto: no checkpoint found for name={cfg.name}; starting fresh")
        summary = trainer.train()
    except KeyboardInterrupt:
        if _is_main_rank():
            ck = latest_checkpoint(trainer.run_dir)
            if ck is None:
                print(f"\n{PROG}: interrupted at step {trainer.step}; no checkpoint was written yet "
                      f"(save_every={cfg.save_every}), so there is nothing to resume", file=sys.stderr)
            else:
                print(f"\n{PROG}: interrupted at step {trainer.step}; last checkpoint {ck}; resume with: "
                      f"{resume_command(argv, trainer.run_dir, ck)}", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during the clean-up: no traceback
            trainer.close()
        return 130
    except BaseException:
        trainer.close()
        raise
    trainer.close()
    if trainer.dist.rank != 0:  # torchrun: rank 0 reports for the run
        return 0
    before, after = summary.get("pass@1_before"), summary.get("pass@1_after")
    print()
    print("held-out pass@1 (fraction)   before RL   after RL")
    fmt = lambda v: "   n/a  " if v is None else f"{v:8.3f}"
    print(f"  all                        {fmt(before)}    {fmt(after)}")
    # one row per held-out kind (the embedded set: new statements of trained tasks, unseen combinations)
    for kind in eval_kinds(summary, "pass@1_before/", "pass@1_after/"):
        print(f"  {kind:<27}{fmt(summary.get(f'pass@1_before/{kind}'))}    {fmt(summary.get(f'pass@1_after/{kind}'))}")
    print(f"total time {summary['time_total_s']:.1f}s; metrics: {trainer.run_dir}/metrics.jsonl; "
          f"plots: {PROG} plot {trainer.run_dir}")
    return 0


def probe_main(argv: list[str]) -> int:
    cfg = _config(argv, "microcoder-train probe-temperature")
    _env(cfg)
    from microcoder_fast.rl.probe import probe_temperature

    probe_temperature(cfg)
    return 0


def plot_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="microcoder-train plot")
    ap.add_argument("run_dir")
    args = ap.parse_args(argv)
    from microcoder_fast.rl.plot import plot_run

    try:
        paths = plot_run(args.run_dir)
    except (FileNotFoundError, ImportError) as e:
        print(f"microcoder-train plot: error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "probe-temperature":
        return probe_main(argv[1:])
    if argv and argv[0] == "plot":
        return plot_main(argv[1:])
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
