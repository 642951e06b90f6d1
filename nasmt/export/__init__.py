"""Export a trial as ordinary PyTorch: generated `model.py` (no nasmt import; its
`predict(rows)` takes raw records), `weights.safetensors`, `preprocessing.json` (the
data's fitted encoding), `arch.json`, ONNX (checked against torch with onnxruntime), a
`torch.export` program, one folder per task holding only the trunk prefix and branch
that task needs, a model card, and (when the spec has a quantization policy) the real
quantized artifact from `nasmt.quant`.

`choose` picks the trial, `codegen` writes `model.py`, `write` writes the folder,
`card` the model card, `predict` serves `nasmt predict` (an export on raw rows).
"""

from nasmt.export.choose import choose_trial
from nasmt.export.predict import predict_file
from nasmt.export.write import export_run

__all__ = ["choose_trial", "export_run", "predict_file"]
