"""Export stage (extra ``[export]``): split ONNX graphs, validation against PyTorch, int8, bundle writer.

Importing this package without the extra raises ImportError naming ``pip install 'uehead[export]'``.
"""
from uehead._extras import require_extra

require_extra("uehead.export", "export", ["torch", "transformers", "onnx", "safetensors"])
