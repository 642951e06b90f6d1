"""Export a trial as ordinary PyTorch: generated `model.py` (no nasmt import; its
`predict(rows)` takes raw records), `weights.safetensors`, `preprocessing.json` (the
data's fitted encoding), `arch.json`, ONNX (checked against torch with onnxruntime), a
`torch.export` program, one folder per task holding only the trunk prefix and branch
that task needs, a model card, and (when the spec has a quantization policy) the real
quantized artifact from `nasmt.quant`.

`choose` picks the trial, `codegen` writes `model.py`, `write` writes the folder,
`card` the model card, `predict` serves `nasmt predict` (an export on raw rows),
`controllable*` the controllable export of a one-shot front, `cli` the commands.
Importing the package stays light (no torch): the names below load on first use.
"""

__all__ = ["choose_trial", "export_run", "predict_file"]


def __getattr__(name: str):
    if name == "choose_trial":
        from nasmt.export.choose import choose_trial

        return choose_trial
    if name == "export_run":
        from nasmt.export.write import export_run

        return export_run
    if name == "predict_file":
        from nasmt.export.predict import predict_file

        return predict_file
    raise AttributeError(f"module 'nasmt.export' has no attribute {name!r}")
