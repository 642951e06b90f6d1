"""Multi-task training and evaluation: the one loop (`loop`), the loss (`losses`), loss
balancing methods (`balance`), inter-task affinity and task grouping (`affinity`), and
prediction and metrics (`metrics`)."""

from nasmt.train.affinity import AffinityProbe, measure_affinity, suggest_groups
from nasmt.train.balance import METHODS, Balancer, make_balancer, min_norm_weights, pcgrad_project, shared_parameters
from nasmt.train.losses import task_losses
from nasmt.train.loop import TrainConfig, TrainHook, train
from nasmt.train.metrics import auc, evaluate, metrics_from_outputs, predict, tensors

__all__ = ["TrainConfig", "TrainHook", "train", "task_losses", "tensors", "predict", "auc", "metrics_from_outputs",
           "evaluate", "METHODS", "Balancer", "make_balancer", "shared_parameters", "pcgrad_project",
           "min_norm_weights", "AffinityProbe", "measure_affinity", "suggest_groups"]
