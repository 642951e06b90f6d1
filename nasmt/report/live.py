"""The live dashboard's data: runs read incrementally, and polls answered with only what
changed since the version the page holds.

`RunFeed` keeps one run's records and the byte offset it has read `trials.jsonl` up to;
a poll parses only the lines appended since (a torn last line waits for its newline).
A file that shrank or was replaced (`replace_records` rewrites it atomically) is read
again whole, and so is a run whose run.json, baselines.jsonl, affinity.json or
oneshot_check.json changed.

`LiveData` builds the page's payload (`page.build_payload`) whenever a run changed,
with the slow views (`page.slow_views`: per-task trade-offs, decisions, importances, ...)
taken from the last background refresh: they are recomputed in a thread, at most every
`SLOW_REFRESH_S` seconds (or 4x their last cost), and reach the page with the next poll.
It keeps the last `KEEP_VERSIONS` payloads, so a page polling `/api/data?v=OLD&delta=1`
gets `payload_delta(old, new)`: the table rows appended since (and the front's rows),
the figures whose data changed, the new architectures, and the small top-level fields;
a version it no longer has, or a change that is not an append, gets the whole payload."""

from __future__ import annotations

import base64
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np

from nasmt.errors import UserError
from nasmt.report.load import RunData, load_runs, make_context, resolve_objectives
from nasmt.report.page import build_payload, payload_json, run_version, slow_views
from nasmt.run import TRIALS_FILE, TrialRecord
from nasmt.run.files import no_gc, parse_jsonl
from nasmt.run.record import records_in_order

SLOW_REFRESH_S = 15.0  # the slow views are recomputed at most this often while trials land
KEEP_VERSIONS = 8  # payloads kept to answer a poll with a delta
SMALL_FIELDS = ("mode", "generated_at", "objectives", "pareto_dims", "runs", "selected", "notes", "affinity", "version")


class RunFeed:
    """One run's trial records, read incrementally from trials.jsonl."""

    def __init__(self, path: Path):
        self.path = Path(path) / TRIALS_FILE
        self.by_num: dict[int, TrialRecord] = {}
        self.records: list[TrialRecord] = []
        self.offset = 0  # bytes read (up to and including the last newline)
        self.lines = 0  # lines read (for messages)
        self.ident = None  # (device, inode) of the file read

    def poll(self) -> str:
        """"same", "appended" (records with new numbers only), or "reloaded" (anything
        else: read again whole). RunDirError for a corrupt line."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.offset == 0 and not self.records:
                return "same"
            self.__init__(self.path.parent)
            return "reloaded"
        ident = (st.st_dev, st.st_ino)
        if ident == self.ident and st.st_size == self.offset:
            return "same"
        whole = ident != self.ident or st.st_size < self.offset
        start = 0 if whole else self.offset
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(st.st_size - start)
        cut = data.rfind(b"\n") + 1  # a torn last line waits for its newline
        first = 1 if whole else self.lines + 1
        dicts = parse_jsonl(data[:cut], self.path, first_line=first, torn_ok=False)
        if whole:
            self.by_num = {}
        appended = not whole and all(int(d.get("number", -1)) not in self.by_num for d in dicts)
        self.records = records_in_order(dicts, str(self.path), self.by_num)
        self.offset, self.ident = start + cut, ident
        self.lines = (0 if whole else self.lines) + data[:cut].count(b"\n")
        if not dicts and not whole:
            return "same"
        return "appended" if appended else "reloaded"


def payload_delta(old: dict, new: dict, old_figs: dict[str, str], new_figs: dict[str, str]) -> dict | None:
    """What a page holding `old` needs to show `new` (None when a delta cannot say it: the
    table's columns changed, or a row other than an appended one changed beyond its
    Pareto flag). `*_figs`: each figure's JSON text, to find the figures that changed."""
    ot, nt = old["table"], new["table"]
    if ot["columns"] != nt["columns"]:
        return None
    n = len(ot["rows"])
    if n > len(nt["rows"]) or ot["drawn"] != nt["drawn"][:n]:
        return None
    keys = [c["key"] for c in nt["columns"]]
    fi = keys.index("front")
    if ot["rows"] != nt["rows"][:n]:
        for a, b in zip(ot["rows"], nt["rows"]):
            if a != b and (a[:fi] != b[:fi] or a[fi + 1:] != b[fi + 1:]):
                return None
    delta = {k: new[k] for k in SMALL_FIELDS if k in new}
    delta.update(
        delta=True, base=old["version"], rows_from=n, rows=nt["rows"][n:], drawn=nt["drawn"][n:],
        front_rows=[g for g, r in enumerate(nt["rows"]) if r[fi]],
        figures={k: v for k, v in new["figures"].items() if old_figs.get(k) != new_figs[k]},
        removed_figures=[k for k in old["figures"] if k not in new["figures"]],
        archs={h: a for h, a in new["archs"].items() if h not in old["archs"]},
    )
    return delta


class LiveData:
    """The runs of a live dashboard: the current payload and its recent versions."""

    def __init__(self, runs: list[Path], objectives: str | None = None):
        self.paths = [Path(r) for r in runs]
        self._lock = threading.Lock()
        with no_gc():
            rd = load_runs(self.paths)  # fail early (UserError) on a bad run dir / objective
        self.objectives = resolve_objectives(rd, objectives)
        self.feeds = [RunFeed(p) for p in self.paths]
        self._files = None  # run_version of the files read
        self._runs: list[RunData] = []
        self._slow = None  # slow views: {"figures", "notes"}
        self._slow_of = None  # the files version they were computed from
        self._slow_gen = 0
        self._slow_next = 0.0  # monotonic time before which no new background refresh starts
        self._slow_thread: threading.Thread | None = None
        self._versions: OrderedDict[str, list] = OrderedDict()  # version -> [payload, its JSON or None, figure JSON]
        self._version = None
        self._built_gen = 0
        self._other = None
        self._ctx = None  # the last build's context (its columns are extended on an append)
        self._update(force=True)

    # -- reading

    def _read(self) -> bool:
        """Bring the runs up to date; True if the rows only grew at the end (or nothing
        changed): the rows read before keep their index."""
        if self._files is not None and _stat_others(self.paths) == self._other:
            states = [f.poll() for f in self.feeds]
            self._runs = [replace(r, trials=list(f.records)) for r, f in zip(self._runs, self.feeds)]
            return all(s == "same" for s in states[:-1]) and "reloaded" not in states
        with no_gc():
            rd = load_runs(self.paths)
            for f in self.feeds:
                f.__init__(f.path.parent)
                f.poll()
        self._runs = [replace(r, trials=list(f.records)) for r, f in zip(rd, self.feeds)]
        self._other = _stat_others(self.paths)
        return False

    # -- building

    def _update(self, force: bool = False) -> None:
        files = run_version(self.paths)  # taken before reading: an append meanwhile is seen next time
        changed = force or files != self._files
        if changed or self._slow_gen != self._built_gen:
            appended = self._read() if changed else True
            with no_gc():
                ctx = make_context(self._runs, self.objectives, previous=self._ctx if appended else None)
                if self._slow is None or not appended:  # first build, or rows moved: every view now
                    self._slow, self._slow_of = slow_views(ctx), files
                payload = build_payload(self._runs, self.objectives, mode="live", slow=self._slow, context=ctx)
            self._ctx = ctx
            self._files, self._built_gen = files, self._slow_gen
            payload["version"] = f"{files}-{self._slow_gen}"
            prev = self._versions[self._version] if self._version in self._versions else None
            figs = {k: prev[2][k] if prev is not None and prev[0]["figures"].get(k) is v else payload_json(v)
                    for k, v in payload["figures"].items()}  # the slow views' JSON is made once
            self._versions[payload["version"]] = [payload, None, figs]  # the whole JSON: made when asked for
            while len(self._versions) > KEEP_VERSIONS:
                self._versions.popitem(last=False)
            self._version = payload["version"]
        if self._slow_of != self._files:
            self._refresh_slow_later(self._files)

    def _refresh_slow_later(self, files: str) -> None:
        """Recompute the slow views in a thread (not while one runs, nor before `_slow_next`)."""
        if (self._slow_thread is not None and self._slow_thread.is_alive()) or time.monotonic() < self._slow_next:
            return
        runs = list(self._runs)

        def work():
            t0 = time.monotonic()
            try:
                slow = slow_views(make_context(runs, self.objectives))
            except Exception as e:  # a view failing must not stop the dashboard: keep the last good views
                print(f"nasmt dashboard: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                slow = None
            with self._lock:
                if slow is not None:
                    self._slow, self._slow_of = slow, files
                    self._slow_gen += 1
                self._slow_next = time.monotonic() + max(SLOW_REFRESH_S, 4 * (time.monotonic() - t0))

        self._slow_thread = threading.Thread(target=work, name="nasmt-slow-views", daemon=True)
        self._slow_thread.start()

    # -- answering

    def current(self) -> tuple[str, bytes, dict]:
        """(version, JSON bytes, payload), re-reading the runs if they changed."""
        with self._lock:
            try:
                self._update()
            except UserError as e:  # a run dir vanished or went bad mid-serve: keep the last good data
                print(f"nasmt dashboard: {e}", file=sys.stderr, flush=True)
            entry = self._versions[self._version]
            if entry[1] is None:
                entry[1] = payload_json(entry[0]).encode("utf-8")
            return self._version, entry[1], entry[0]

    def since(self, version: str | None) -> tuple[int, bytes | None, str]:
        """A poll from a page holding `version`: (204, None) when it is current, else (200,
        the delta JSON when `version` is one of the last few and a delta can say it, else
        the whole payload's JSON). The third item says which: "none" / "delta" / "full"."""
        with self._lock:
            try:
                self._update()
            except UserError as e:  # keep the last good data (as `current`)
                print(f"nasmt dashboard: {e}", file=sys.stderr, flush=True)
            now = self._version
            if version == now:
                return 204, None, "none"
            old, (payload, _, figs) = self._versions.get(version or ""), self._versions[now]
        if old is not None:
            delta = payload_delta(old[0], payload, old[2], figs)
            if delta is not None:
                return 200, _delta_json(delta, figs, old[0]["figures"]), "delta"
        return 200, self.current()[1], "full"


def _delta_json(delta: dict, figs: dict[str, str], old_figures: dict) -> bytes:
    """The delta as JSON: a changed figure as a patch of the old one when it can say it
    (`figure_patch`: its points appended), else as the JSON text already made for it."""
    sent = delta.pop("figures")
    patches = {k: pt for k in sent if k in old_figures
               for pt in [figure_patch(old_figures[k], sent[k])] if pt is not None}
    delta["figure_patches"] = patches
    text = payload_json(delta)
    inner = ",".join(f"{payload_json(k)}:{figs[k]}" for k in sent if k not in patches)
    return (text[:-1] + f',"figures":{{{inner}}}}}').encode("utf-8")


APPENDABLE = ("x", "y", "z", "customdata", "text")  # trace arrays a patch may extend


def _as_list(v):
    """A trace array as a list (numpy arrays and Plotly's typed-array specs decoded)."""
    if isinstance(v, dict) and "bdata" in v and "dtype" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return (a.reshape(v["shape"]) if "shape" in v else a).tolist()
    return v.tolist() if isinstance(v, np.ndarray) else v


def figure_patch(old: dict, new: dict) -> dict | None:
    """`new` as a patch of `old` (same layout, same traces in the same order): per trace
    that changed, the values appended to its arrays (`extend`, when every other property
    is equal and the old arrays are the new ones' first values) or the whole trace
    (`replace`). None when the layout or the traces' kinds differ."""
    od, nd = old.get("data", []), new.get("data", [])
    if len(od) != len(nd) or payload_json(old.get("layout", {})) != payload_json(new.get("layout", {})):
        return None
    extend, replace_ = {}, {}
    for i, (a, b) in enumerate(zip(od, nd)):
        if a.get("type") != b.get("type"):
            return None
        rest_a = {k: v for k, v in a.items() if k not in APPENDABLE}
        rest_b = {k: v for k, v in b.items() if k not in APPENDABLE}
        tails, ok = {}, payload_json(rest_a) == payload_json(rest_b) and set(a) == set(b)
        for k in APPENDABLE:
            if not ok or k not in a:
                continue
            va, vb = _as_list(a[k]), _as_list(b[k])
            if not isinstance(va, list) or not isinstance(vb, list) or len(va) > len(vb) or vb[:len(va)] != va:
                ok = False
            elif len(vb) > len(va):
                tails[k] = vb[len(va):]
        if not ok:
            replace_[str(i)] = b
        elif tails:
            extend[str(i)] = tails
    return {"extend": extend, "replace": replace_}


def _stat_others(paths: list[Path]) -> str:
    """run_version of everything but trials.jsonl (a change there means reading a run again whole)."""
    out = []
    for p in paths:
        for f in ("run.json", "baselines.jsonl", "affinity.json", "oneshot_check.json"):
            try:
                st = os.stat(Path(p) / f)
                out.append(f"{f}:{st.st_mtime_ns}:{st.st_size}")
            except OSError:
                out.append(f"{f}:-")
    return ";".join(out)
