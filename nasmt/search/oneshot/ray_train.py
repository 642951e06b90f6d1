"""Ray Train for the supernet's several workers (`--supernet-workers N` > 1: DDP, gloo on CPU,
nccl on GPU); one worker runs as a plain Ray task (`train._single_worker`)."""

from __future__ import annotations


def trainer_class():
    """TorchTrainer without Ray Train's detached PlacementGroupCleaner. That actor only
    matters when the controller dies ungracefully (the run's placement group is released
    with the job anyway); it costs a 12 s stop timeout per fit on Ray 2.60, and its
    state-API look-ups go to the newest Ray instance on the machine when several run
    ('Found multiple active Ray instances'), which may not be this one."""
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:  # another Ray version: the stock trainer
        return TorchTrainer

    class _Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [c for c in super()._create_default_callbacks() if not isinstance(c, PlacementGroupCleanerCallback)]

    return _Trainer
