"""`microcoder-train`: MicroCoder-GRPO training, the temperature probe, and plots.

    microcoder-train [--config FILE.yaml] [key=value ...]             train (no arguments: the embedded demo)
    microcoder-train probe-temperature [--config FILE.yaml] [key=value ...]
    microcoder-train plot RUN_DIR                                      PNG curves into RUN_DIR/plots
    microcoder-train --help-config                                     every key, its type and default
    torchrun --nproc_per_node K --no-python microcoder-train ...      K ranks, FSDP2 (see rl/distributed.py)
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv: list[str], prog: str) -> tuple[str | None, list[str]]:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML file of config keys (see --help-config)")
    ap.add_argument("--help-config", action="store_true", help="list every config key with its default")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, applied after the file")
    args = ap.parse_args(argv)
    if args.help_config:
        from microcoder_fast.rl.config import describe_keys

        print(describe_keys())
        raise SystemExit(0)
    return args.config, args.overrides


def _config(argv: list[str], prog: str):  # noqa: ANN202
    from microcoder_fast.rl.config import ConfigError, load_config, parse_overrides

    config_file, items = _parse(argv, prog)
    try:
        return load_config(config_file, parse_overrides(items))
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _env() -> None:
    # vLLM in this process on CPU (harmless when vLLM is absent or on GPU)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def train_main(argv: list[str]) -> int:
    cfg = _config(argv, "microcoder-train")
    _env()
    from microcoder_fast.rl.trainer import Trainer, eval_kinds, log

    trainer = Trainer(cfg)
    try:
        log(f"run directory: {trainer.run_dir} (resolved config in config.yaml)")
        summary = trainer.train()
    finally:
        trainer.close()
    if trainer.dist.rank != 0:  # torchrun: rank 0 reports for the run
        return 0
    before, after = summary.get("pass@1_before"), summary.get("pass@1_after")
    print()
    print("held-out pass@1   before RL   after RL")
    fmt = lambda v: "   n/a  " if v is None else f"{v:8.3f}"
    print(f"  all             {fmt(before)}    {fmt(after)}")
    # one row per held-out kind (the embedded set: new statements of trained tasks, unseen combinations)
    for kind in eval_kinds(summary, "pass@1_before/", "pass@1_after/"):
        print(f"  {kind:<16}{fmt(summary.get(f'pass@1_before/{kind}'))}    {fmt(summary.get(f'pass@1_after/{kind}'))}")
    print(f"total time {summary['time_total_s']:.1f}s; metrics: {trainer.run_dir}/metrics.jsonl; "
          f"plots: microcoder-train plot {trainer.run_dir}")
    return 0


def probe_main(argv: list[str]) -> int:
    cfg = _config(argv, "microcoder-train probe-temperature")
    _env()
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
        print(f"microcoder-train plot: {e}", file=sys.stderr)
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
