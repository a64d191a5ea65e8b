"""Training stage (extra ``[train]``): LoRA fine-tune, merge, uncertainty heads, baselines.

Importing this package without the extra raises ImportError naming ``pip install 'uehead[train]'``.
"""
from uehead._extras import require_extra

require_extra("uehead.training", "train", ["torch", "transformers", "peft", "safetensors", "sklearn"])

from uehead.training.api import train
from uehead.training.config import BaselineConfig, HeadGridConfig, LoraSettings, TrainConfig

__all__ = ["BaselineConfig", "HeadGridConfig", "LoraSettings", "TrainConfig", "train"]
