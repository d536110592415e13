"""The one training engine every model family uses: ``fit(model, family, data, cfg, run_dir)``.

Files: config (TrainConfig), optim (AdamW + warmup/cosine), engine (the loop),
checkpoint (atomic training_state/), rng (generator states as tensors), distributed
(torchrun/DDP), interrupt (Ctrl-C/SIGTERM), metrics_log (metrics.jsonl + TensorBoard),
progress (the bar).
"""

from nextworld.train.config import TrainConfig
from nextworld.train.engine import BatchPrep, FitResult, SampleFn, fit, saved_train_config
from nextworld.train.optim import lr_at
from nextworld.train.rng import seed_everything

__all__ = ["BatchPrep", "FitResult", "SampleFn", "TrainConfig", "fit", "lr_at", "saved_train_config", "seed_everything"]
