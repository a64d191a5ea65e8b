"""The checkpoint's Hugging Face objects, loaded with transformers: the merged classifier and its
fast tokenizer. The checkpoint itself is read and checked torch-free by :mod:`uehead.checkpoint`."""
from __future__ import annotations

from uehead.checkpoint import Checkpoint, CheckpointError
from uehead.token_task import is_token_task


def load_model(ckpt: Checkpoint):
    """The merged classifier of CKPT/model in float32, eval mode (dropout off): the
    ``*ForTokenClassification`` model of a token-classification checkpoint, else the
    ``*ForSequenceClassification`` one."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForTokenClassification if is_token_task(ckpt) else AutoModelForSequenceClassification
    try:
        model = auto.from_pretrained(ckpt.model_dir, dtype="float32")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the merged model ({exc}).", path=ckpt.model_dir,
                              fix="re-run `uehead train`; CKPT/model must be a save_pretrained folder.") from exc
    return model.float().eval()


def load_tokenizer(ckpt: Checkpoint):
    """The checkpoint's fast tokenizer (a ``PreTrainedTokenizerFast``) with a pad token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt.model_dir)
    if not getattr(tok, "is_fast", False):
        raise CheckpointError("the tokenizer is not a fast tokenizer; the runtime needs tokenizer.json.",
                              path=ckpt.model_dir, fix="save the model's fast tokenizer (use_fast=True).")
    if tok.pad_token_id is None:
        raise CheckpointError("the tokenizer has no pad token.", path=ckpt.model_dir,
                              fix="set a pad token before saving (decoders: eos as pad).")
    return tok
