#!/usr/bin/env bash
# A verl 0.9 GRPO run switched to MicroCoder-GRPO: our policy loss (ops.grpo_loss, clip 0.2 / 0.28, no KL),
# our advantage estimator (verl's GRPO advantage x conditional truncation mask, rho 0.1) and our judge as the
# reward. Install first: pip install --no-deps verl==0.9.1 && pip install -e ".[verl]" (plus verl's GPU stack:
# vLLM, flash-attn, ... as verl's own docs describe).
#
# TRAIN / VAL are verl parquet files whose reward_model.ground_truth holds each problem's tests, in our
# encoding ({"inputs": [...], "outputs": [...], "fn_name": null}) or as a LiveCodeBench row (a dict with
# private_test_cases, public_test_cases, metadata). MODEL is a HF model id or path.
#
# VERL_USE_EXTERNAL_MODULES makes `import verl` import our module in every process verl starts (the driver
# computes advantages, the actor workers the loss); on a multi-node cluster it must be in every node's
# environment. The MICROCODER_TRUNCATION_* knobs are read where advantages are computed (the driver).
set -euo pipefail
: "${TRAIN:?set TRAIN=/path/train.parquet}" "${VAL:?set VAL=/path/val.parquet}" "${MODEL:=Qwen/Qwen3-1.7B}"

export VERL_USE_EXTERNAL_MODULES=microcoder_fast.integrations.verl
export MICROCODER_TRUNCATION_MODE=conditional MICROCODER_TRUNCATION_RHO=0.1

python -m verl.trainer.main_ppo \
    data.train_files="$TRAIN" data.val_files="$VAL" \
    data.train_batch_size=64 data.max_prompt_length=2048 data.max_response_length=4096 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.external_lib=microcoder_fast.integrations.verl \
    actor_rollout_ref.rollout.n=8 actor_rollout_ref.rollout.temperature=1.2 \
    actor_rollout_ref.actor.ppo_mini_batch_size=64 \
    actor_rollout_ref.actor.policy_loss.loss_mode=microcoder \
    actor_rollout_ref.actor.clip_ratio_low=0.2 actor_rollout_ref.actor.clip_ratio_high=0.28 \
    actor_rollout_ref.actor.loss_agg_mode=token-mean \
    actor_rollout_ref.actor.use_kl_loss=False algorithm.use_kl_in_reward=False \
    algorithm.adv_estimator=microcoder_grpo \
    reward.custom_reward_function.path=pkg://microcoder_fast.integrations.verl \
    reward.custom_reward_function.name=compute_score \
    "$@"
