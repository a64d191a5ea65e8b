"""Export stage (extra ``[export]``): split ONNX graphs, validation against PyTorch, int8, bundle writer.

Importing this package without the extra raises ImportError naming ``pip install 'uehead[export]'``.

Public API:
    export_bundle(checkpoint, bundle, *, int8=False, opset=17, data=None, default_head=None) -> Manifest
    compare_runtime_to_pytorch(checkpoint, bundle, texts, *, tolerance=1e-4, batch_size=32) -> dict
    ExportError, ExportValidationError (uehead.bundle.BundleError subclasses)
    CheckpointError (the one of uehead.checkpoint, re-exported)
"""
from uehead._extras import require_extra

require_extra("uehead.export", "export", ["torch", "transformers", "onnx", "safetensors"])

from uehead.export.api import export_bundle  # noqa: E402
from uehead.checkpoint import CheckpointError  # noqa: E402
from uehead.export.errors import ExportError, ExportValidationError  # noqa: E402
from uehead.export.validate import compare_runtime_to_pytorch  # noqa: E402

__all__ = ["export_bundle", "compare_runtime_to_pytorch", "ExportError", "CheckpointError",
           "ExportValidationError"]
