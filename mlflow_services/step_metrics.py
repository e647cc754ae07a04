"""The Trainer's log entries as MLflow metrics of the active run, at their optimizer step."""

from __future__ import annotations

import mlflow
from transformers import TrainerCallback


class MlflowStepLogger(TrainerCallback):
    """Trainer log entries as MLflow metrics at their step: ``train_loss``, ``train_learning_rate``,
    ``train_samples_per_second``, ``dev_cer`` ..."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {(f"dev_{k[5:]}" if k.startswith("eval_") else f"train_{k}"): float(v)
                   for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numbers:
            mlflow.log_metrics(numbers, step=state.global_step)
