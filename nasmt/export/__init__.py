"""Export a trial as ordinary PyTorch: generated `model.py` (no nasmt import),
`weights.safetensors`, `arch.json`, ONNX (checked against torch with onnxruntime), a
`torch.export` program, one folder per task holding only the trunk prefix and branch
that task needs, a model card, and (when the spec has a quantization policy) the real
quantized artifact from `nasmt.quant`.

`choose` picks the trial, `codegen` writes `model.py`, `write` writes the folder,
`card` the model card.
"""

from nasmt.export.choose import choose_trial
from nasmt.export.write import export_run

__all__ = ["choose_trial", "export_run"]
