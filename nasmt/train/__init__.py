"""Multi-task training and evaluation: the one loop (`loop`), the loss (`losses`), and
prediction and metrics (`metrics`)."""

from nasmt.train.losses import task_losses
from nasmt.train.loop import TrainConfig, TrainHook, train
from nasmt.train.metrics import auc, evaluate, metrics_from_outputs, predict, tensors

__all__ = ["TrainConfig", "TrainHook", "train", "task_losses", "tensors", "predict", "auc", "metrics_from_outputs",
           "evaluate"]
