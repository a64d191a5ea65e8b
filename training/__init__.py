"""Training stage (extra ``[train]``): LoRA fine-tune, merge, uncertainty heads, baselines.

Importing this package without the extra raises ImportError naming ``pip install 'uehead[train]'``.
"""
from uehead._extras import require_extra

require_extra("uehead.training", "train", ["torch", "transformers", "peft", "safetensors", "sklearn"])
