"""Adapters for the trainers our users already run; each imports its trainer lazily and is never required.

- ``microcoder_fast.integrations.trl``: ``CodeReward`` for ``GRPOTrainer(reward_funcs=[...])``,
  ``use_linear_token_logprobs`` (our LM head in place of TRL's) and ``MicroCoderGRPOTrainer`` (our head and
  ``ops.grpo_loss`` inside TRL's GRPOTrainer).
- ``microcoder_fast.integrations.verl``: ``compute_score`` / ``compute_score_batch`` for verl's
  ``custom_reward_function``; importing it registers the policy loss ``"microcoder"`` and the advantage
  estimator ``"microcoder_grpo"`` in verl's registries.

This package imports nothing itself: importing a submodule imports its trainer (TRL or verl).
"""
