"""``microcoder-train probe-temperature``: measure the initial model's output diversity over a grid of T and
pick the training temperature by the rule documented in `microcoder_fast.rl.temperature` (diversity from `microcoder_fast.rl.diversity`).

It builds the trainer exactly as training would (including the supervised warm-up when ``sft_steps > 0``,
since the probe must see the model RL starts from), samples ``group_size`` responses for ``probe_prompts``
training prompts at each temperature of ``probe_temperatures``, judges them, and writes
``RUN_DIR/probe_temperature.json`` with the table, the chosen T and the reason.

Imports ``rl`` (config, trainer, temperature, diversity) and ``data``; never ``cli`` or ``integrations``.
"""

from __future__ import annotations

import json
from typing import Any

from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.diversity import batch_diversity
from microcoder_fast.rl.temperature import ProbeRow, parse_grid, select_temperature


def probe_temperature(cfg: TrainConfig) -> dict[str, Any]:
    from microcoder_fast.data.problem import spread_indices
    from microcoder_fast.rl.trainer import Trainer, log

    trainer = Trainer(cfg)
    try:
        if not trainer.sft_done:
            trainer.sft()
        trainer._make_engine()
        idx = spread_indices(len(trainer.train_problems), min(cfg.probe_prompts, len(trainer.train_problems)))
        prompts = [trainer.train_prompts[i] for i in idx]
        rows: list[ProbeRow] = []
        for t in parse_grid(cfg.probe_temperatures):
            futures: dict[int, list[Any]] = {}

            def on_group(i: int, group: list[Any], futures: dict[int, list[Any]] = futures) -> None:
                futures[i] = [trainer.judge.submit(c.text, trainer.train_problems[idx[i]]) for c in group]

            groups = trainer.engine.generate(prompts, cfg.group_size, t, cfg.max_response_length,
                                             seed=cfg.seed * 31 + int(t * 1000), on_group=on_group)
            outs = [f.result().outcome for i in range(len(groups)) for f in futures[i]]
            n = max(1, len(outs))
            row = ProbeRow(
                temperature=t,
                diversity=batch_diversity([[c.token_ids for c in g] for g in groups], cfg.diversity_metric,
                                          cfg.diversity_max_n),
                code_rate=1.0 - outs.count("no_code") / n,
                pass_rate=outs.count("pass") / n,
                mean_length=sum(len(c.token_ids) for g in groups for c in g) / n,
            )
            rows.append(row)
            log(f"T={t:.2f}  diversity {row.diversity:.3f}  code rate {row.code_rate:.2f}  "
                f"pass rate {row.pass_rate:.3f}  mean length {row.mean_length:.1f}")
        chosen, reason = select_temperature(rows, cfg.probe_div_low, cfg.probe_div_high, cfg.probe_min_code_rate)
        result = {"chosen_temperature": chosen, "reason": reason, "metric": cfg.diversity_metric,
                  "rows": [r.__dict__ for r in rows]}
        (trainer.run_dir / "probe_temperature.json").write_text(json.dumps(result, indent=2))
        print()
        print(f"{'T':>5}  {'diversity':>9}  {'code rate':>9}  {'pass rate':>9}  {'length':>7}")
        for r in rows:
            mark = "  <- chosen" if r.temperature == chosen else ""
            print(f"{r.temperature:5.2f}  {r.diversity:9.3f}  {r.code_rate:9.2f}  {r.pass_rate:9.3f}  "
                  f"{r.mean_length:7.1f}{mark}")
        print(f"\nchosen temperature: {chosen} ({reason})")
        print(f"train with: microcoder-train temperature={chosen}  (table in {trainer.run_dir}/probe_temperature.json)")
        return result
    finally:
        trainer.close()
