"""MicroCoder-GRPO trainer: config, rollout engines, rewards, masking, temperature, loop, checkpoints."""
