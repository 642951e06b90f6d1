"""MODEL_CARD.md of a controllable export: the front table, how a candidate is chosen,
the weights stored once, and the command that reproduces it. User text is escaped."""

from __future__ import annotations

from pathlib import Path

from nasmt.export.card import _md


def _n(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}g}"


def controllable_card(doc: dict, command: str) -> str:
    tasks = doc["tasks"]
    head = " | ".join(_md(f"{t['name']} {t['metric']} val / test") for t in tasks)
    rows = []
    for c in doc["candidates"]:
        metrics = " | ".join(f"{c['val'][t['ident']]:.4f} / {c['test'][t['ident']]:.4f}" for t in tasks)
        k = c["costs"]
        onnx = "ONNX" + (" + quantized" if c.get("quantized") else "") if c.get("onnx") else "–"
        rows.append(f"| {c['id']} | {c['trial']} | {_md(c['sharing'])} | {_md(c['policy'])} | {metrics} | "
                    f"{k['params']:,} | {k['flops']:,} | {k['bytes']:,} | {_n(k['latency_ms'], 3)} | "
                    f"{c['check']['max_abs_diff_vs_extracted']:.1e} | {onnx} |")
    w = doc["weights"]
    example = tasks[0]["ident"]
    n_front = doc.get("front_size", len(doc["candidates"]))
    thinned = f" (thinned from {n_front} by --max-candidates)" if n_front > len(doc["candidates"]) else ""
    return f"""# Controllable export of run `{_md(Path(doc['run']).name)}`

{len(doc['candidates'])} candidates of the one-shot front{thinned} (Pareto over
{_md(', '.join(o['name'] for o in doc['front_objectives']))}) on one set of shared supernet weights
(after {doc['supernet_epochs']} supernet epoch(s)). The trade-off is chosen at run time:

```python
import model
net = model.load()
net.select(budget={{"latency_ms": 1.0}}, preference={{"{example}": 1.0}})  # -> what it chose
net.select(tasks=["{example}"])   # runs only the trunk prefix and branches that task needs
preds = net.predict("new.csv")
```

`select` keeps the candidates whose costs are within the budget and takes the one with the
highest preference-weighted validation quality (per task, the candidate's error placed on
the front's range: 1 = the front's best, 0 = its worst). Switching copies no weight.

| id | trial | sharing | policy | {head} | params | FLOPs | bytes (fp32) | latency ms | diff vs extracted | files |
|---|---|---|---|{'---|' * len(tasks)}---|---|---|---|---|---|
{chr(10).join(rows)}

Latency: {doc['latency']['what']}, batch {doc['latency']['batch']}, {doc['latency']['threads']} thread, median of
{doc['latency']['repeats']} (`net.measure_latency()` re-measures on your machine). Metrics are those of the network
model.py runs (fp32); a quantized policy's deployable artifact is `onnx/c<id>/model_quant.onnx`.

Weights: `shared.safetensors` {w['shared_bytes']:,} bytes ({w['stored_elements']:,} values stored for
{w['union_elements']:,} the candidates' slices cover), `own.safetensors` {w['own_bytes']:,} bytes (BatchNorm
statistics); the candidates exported one by one would hold {w['separate_sum_bytes']:,} bytes, the largest
{w['largest_single_bytes']:,}.

Candidates use inherited (supernet) weights; a candidate finished after the search ships here with
its inherited weights, not its fine-tuned ones.

Reproduce: `{command}`
"""
