"""The network of a controllable export: every candidate of the front on one set of
shared weights, the trade-off chosen at run time with `select`.

Weights. `shared` holds each supernet bank tensor the front uses once, cut to the
smallest box holding every candidate's slice (first rows / columns, centre crop of
kernels, as the supernet slices). Each candidate is its ordinary MultiTaskNet structure
(built on the meta device: nothing allocated) whose parameters are then bound to views
of `shared` (`slice_view`: no copy), so switching candidates swaps which structure runs
and copies no weight. Only tensors the supernet assembles from several bank pieces (PLE
gates: a shared-expert block and an own-expert block) are concatenated, once, at load.
`own` holds what is a candidate's own: its BatchNorm running statistics (recalibrated
for it) under `c<id>.<buffer name>`.

`select(tasks=[...])` runs only the trunk prefix, task groups and branches those tasks
read (modules shared with the full structure: still no copy); an expert mixture in that
prefix runs whole (each gate reads every expert).

Everything after the marker line below is copied verbatim into the export's `model.py`
(after the ops and `nasmt/run/controllable.py`'s selection code), so nasmt's `predict`
and the standalone file run the same code; nothing there may name this package.
"""

import statistics
import time

import torch
from torch import nn

from nasmt.data.encoding import predict_rows
from nasmt.model.ops import MultiTaskNet
from nasmt.run.controllable import SelectionError, resolve_tasks, select_candidate

MARKER = "# -- model.py copies everything below this line --"
# -- model.py copies everything below this line --


def slice_view(t, shape, final=None, cols=None):
    """t[:s0, :s1, centre crop of the other dims]: a view of `t` (no copy). A grouped
    weight kept in its natural shape (`final` given): the first entries of every
    dimension, reshaped to `final` (a copy where the slice is not contiguous). The layer
    reading a tabular stem (`cols` given): the first s0 rows, those columns (a copy)."""
    if cols is not None:
        return t[: shape[0]].index_select(1, torch.as_tensor(cols, device=t.device))
    if final is not None:
        return t[tuple(slice(0, s) for s in shape)].reshape(tuple(final))
    idx = [slice(0, shape[0])]
    if len(shape) > 1:
        idx.append(slice(0, shape[1]))
    for d in range(2, len(shape)):
        off = (t.shape[d] - shape[d]) // 2
        idx.append(slice(off, off + shape[d]))
    return t[tuple(idx)]


def _owner(root, name):
    mod, _, leaf = name.rpartition(".")
    return (root.get_submodule(mod) if mod else root), leaf


def bind(structure, sources, shared, own, prefix):
    """Give `structure` (built on the meta device) its weights: each parameter a view of
    its `shared` tensor (PLE gates: the concatenation of their pieces), each buffer its
    own tensor `own[prefix + name]`. Every tensor must be given."""
    for name, pieces in sources.items():
        parts = [slice_view(shared[k], tuple(shape), *final) for k, shape, *final in pieces]
        t = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        mod, leaf = _owner(structure, name)
        mod._parameters[leaf] = nn.Parameter(t, requires_grad=False)
    for name, _ in list(structure.named_buffers()):
        mod, leaf = _owner(structure, name)
        mod._buffers[leaf] = own[prefix + name]
    left = [n for n, p in list(structure.named_parameters()) + list(structure.named_buffers()) if p.is_meta]
    if left:
        raise ValueError(f"controllable: no weights for {left[:3]}")
    return structure.eval()


def task_subnet(net, tasks):
    """The modules `tasks` need from `net` (shared, not copied): trunk prefix, groups, branches."""
    joins = {t: net.joins[t] for t in tasks if t in net.joins}
    groups = sorted(set(joins.values()))
    depth = max([net.group_taps[g] for g in groups] + [net.taps[t] for t in tasks if t not in joins] + [0])
    readers = list(tasks) + ["group." + g for g in groups]
    return MultiTaskNet(
        list(net.trunk[:depth]), {t: net.branches[t] for t in tasks}, {t: net.taps[t] for t in tasks if t in net.taps},
        groups={g: net.groups[g] for g in groups}, group_taps={g: net.group_taps[g] for g in groups}, joins=joins,
        slots={r: net.slots[r] for r in readers if r in net.slots},
    ).eval()


class ControllableNet(nn.Module):
    """Every candidate of the front on shared weights; `select` picks the one that runs.

    `front`: front.json's content; `structures`: one MultiTaskNet per candidate (meta
    device); `shared` / `own`: the tensors of shared.safetensors / own.safetensors;
    `pre`: preprocessing.json (for `predict`). Starts on the candidate an empty
    `select()` picks (the best equal-weighted quality)."""

    def __init__(self, front, structures, shared, own, pre=None):
        super().__init__()
        self.front, self.pre = front, pre
        self.candidates = front["candidates"]
        self.tasks = [t["ident"] for t in front["tasks"]]
        self.names = {t["ident"]: t["name"] for t in front["tasks"]}
        self.shared, self.own = dict(shared), dict(own)
        self.structures = [bind(s, c["sources"], self.shared, self.own, f"c{c['id']}.")
                           for s, c in zip(structures, self.candidates)]
        self._subnets = {}
        self.chosen, self.running = None, None
        self.select()

    def _apply(self, fn, recurse=True):  # .to(device) / .half(): move the one copy, then rebind
        self.shared = {k: fn(v) for k, v in self.shared.items()}
        self.own = {k: fn(v) for k, v in self.own.items()}
        for s, c in zip(self.structures, self.candidates):
            for n, p in s.named_parameters():
                mod, leaf = _owner(s, n)
                mod._parameters[leaf] = nn.Parameter(torch.empty(0, device="meta"), requires_grad=False)
            for n, _ in s.named_buffers():
                mod, leaf = _owner(s, n)
                mod._buffers[leaf] = torch.empty(0, device="meta")
            bind(s, c["sources"], self.shared, self.own, f"c{c['id']}.")
        self._subnets.clear()
        if self.chosen is not None:
            self._switch(self.chosen["id"], self.chosen["tasks"])
        return self

    def select(self, budget=None, preference=None, tasks=None, candidate=None):
        """Switch (in place, no weight copied) to the candidate with the highest
        preference-weighted validation quality whose costs are within `budget`
        ({cost: limit}: latency_ms, params, flops, bytes, size_bytes), running only
        `tasks` (default all). `preference`: {task: weight >= 0} (default equal over the
        tasks run); `candidate`: an id of the front instead of a choice. Returns what it
        chose. SelectionError (a ValueError, one line) when nothing fits or an argument
        is wrong; the selection then stays as it was."""
        if candidate is not None:
            run = resolve_run(self, tasks)
            ids = [c["id"] for c in self.candidates]
            if candidate not in ids:
                raise SelectionError("candidate", f"no candidate {candidate!r} (ids: {ids})")
            i, info = ids.index(candidate), {"score": None, "tasks": run, "preference": None, "budget": {}}
        else:
            i, info = select_candidate(self.candidates, budget, preference, tasks, self.names, self.tasks)
        self._switch(self.candidates[i]["id"], info["tasks"])
        c = self.candidates[i]
        self.chosen = {"id": c["id"], "trial": c["trial"], "tasks": list(info["tasks"]), "score": info["score"],
                       "preference": info["preference"], "budget": info["budget"], "costs": dict(c["costs"]),
                       "val_error": {t: c["val_error"][t] for t in info["tasks"]}}
        return dict(self.chosen)

    def _switch(self, cid, tasks):
        i = [c["id"] for c in self.candidates].index(cid)
        full = self.structures[i]
        if list(tasks) == self.tasks:
            self.running = full
            return
        key = (cid, tuple(tasks))
        if key not in self._subnets:
            self._subnets[key] = task_subnet(full, list(tasks))
        self.running = self._subnets[key]

    def forward(self, x):
        return self.running(x)

    def parameters(self, recurse=True):  # the running candidate's (views of the shared tensors)
        return self.running.parameters()

    def predict(self, rows):
        """Per-task predictions of the current selection for raw inputs (as an export's
        `predict`): only the tasks selected."""
        pre = dict(self.pre, tasks=[t for t in self.pre["tasks"] if t["ident"] in self.chosen["tasks"]])
        return predict_rows(self, pre, rows)

    @torch.no_grad()
    def measure_latency(self, batch=1, repeats=30, warmup=5, tasks=None):
        """Median forward time (ms) of every candidate on this machine, running `tasks`
        (default all): {id: ms}. The front's latency_ms (what budgets compare with) is
        updated when all tasks run. The selection is restored."""
        keep = self.chosen
        x = torch.zeros((batch, *self.front["input_shape"]), device=next(iter(self.shared.values())).device)
        out = {}
        for c in self.candidates:
            self._switch(c["id"], resolve_run(self, tasks))
            for _ in range(warmup):
                self.running(x)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.running(x)
                ts.append(time.perf_counter() - t0)
            out[c["id"]] = 1000.0 * statistics.median(ts)
            if tasks is None:
                c["costs"]["latency_ms"] = out[c["id"]]
        self._switch(keep["id"], keep["tasks"])
        return out

    def weight_bytes(self):
        """Bytes of the tensors held: the shared weights once, plus every candidate's own."""
        return sum(t.numel() * t.element_size() for t in list(self.shared.values()) + list(self.own.values()))


def resolve_run(net, tasks):
    """The task idents `tasks` names (idents or names); None: every task."""
    return resolve_tasks(tasks, net.tasks, net.names)
