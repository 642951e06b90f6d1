"""`TrialSink`: how a trial's files reach the run directory without a shared filesystem.

A trial may run on any node of a Ray cluster, and that node may not see the driver's
disk. So a trial never writes the run directory: it sends its files (spec.json at the
start; result.json + weights.safetensors, or error.json, at the end) through Ray to
this small actor, which the driver starts on its own node (hard node affinity, no CPU)
and which writes them atomically into `RUN/trials/NNNNN/`. The trial waits for the
write before it reports, so a finished trial's files survive a driver crash exactly
as before (resume recovers them)."""

from __future__ import annotations

from pathlib import Path

import ray

from nasmt.run import atomic_write_bytes, ensure_dir, trial_dir


class TrialSink:
    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)

    def write(self, number: int, files: dict[str, bytes]) -> None:
        d = ensure_dir(trial_dir(self.run_dir, number))
        for name, data in files.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"TrialSink: bad file name {name!r}")
            atomic_write_bytes(d / name, data)

    def write_supernet(self, blob: bytes, state: dict, extra: dict[str, bytes] | None = None) -> None:
        """One-shot supernet checkpoint (`nasmt.search.oneshot.bank.write_checkpoint`: the
        bank's safetensors, then its state). `extra`: further files of the supernet folder
        (the optimizer's moments), written before both."""
        from nasmt.search.oneshot.bank import supernet_dir, write_checkpoint

        d = ensure_dir(supernet_dir(self.run_dir))
        for name, data in (extra or {}).items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"TrialSink: bad file name {name!r}")
            atomic_write_bytes(d / name, data)
        write_checkpoint(self.run_dir, blob, state)


def start_sink(run_dir: Path):
    """The sink actor, pinned to the driver's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0)(TrialSink).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        max_concurrency=4,  # trials finishing together write in parallel
    )
    return actor.remote(str(run_dir))
