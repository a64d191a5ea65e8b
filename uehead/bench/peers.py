"""The peers ``uehead bench`` compares against: what a user would otherwise pick for the same
merged model (CKPT/model). Needs the export extra: importing this module without torch +
transformers raises ImportError naming ``pip install 'uehead[export]'``; without optimum +
optimum-onnx the ORT peers are reported as skipped. Imported only when the peers run.

* ``pytorch-fp32``: transformers tokenizer + ``AutoModelForSequenceClassification`` eager,
  ``torch.inference_mode``, ``torch.set_num_threads(threads)``;
* ``pytorch-int8``: the same after ``torch.ao.quantization.quantize_dynamic`` (Linear -> qint8);
* ``optimum-fp32`` / ``optimum-int8``: optimum's ``ORTModelForSequenceClassification`` exported
  offline from the same folder (int8: ``ORTQuantizer`` dynamic, per-channel, the CPU's best
  ``AutoQuantizationConfig``), ONNX Runtime on the same threads, called directly;
* ``optimum-pipeline-fp32``: transformers' ``pipeline("text-classification")`` over that model.

Every peer pads each batch to its longest text (the transformers default), truncates at the
bundle's max_length and returns softmax probabilities [N, C] in input order.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uehead._extras import installed_versions, require_extra
from uehead.bench.engines import PEERS, peer_names
from uehead.checkpoint import resolve_model_dir

require_extra("uehead.bench.peers", "export", ["torch", "transformers"])

__all__ = ["PEERS", "Peer", "make_peers"]


class Peer:
    """tokenise (``encode``) + forward (``forward``) per batch; logs both times for GFLOP/s."""

    def __init__(self, name: str, tokenizer, forward: Callable[[dict], np.ndarray], max_length: int,
                 tensors: str, predict_all: Callable[[list[str], int], np.ndarray] | None = None):
        self.name = name
        self.tokenizer = tokenizer
        self.forward = forward
        self.max_length = max_length
        self.tensors = tensors
        self._predict_all = predict_all
        self.log: list[tuple[int, float, float, list[tuple[int, int]]]] = []

    def encode(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors=self.tensors)

    def predict(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self._predict_all is not None:
            return self._predict_all(texts, batch_size)
        out, t_tok, t_fwd, shapes = [], 0.0, 0.0, []
        for s in range(0, len(texts), batch_size):
            t0 = time.perf_counter()
            enc = self.encode(texts[s:s + batch_size])
            t1 = time.perf_counter()
            out.append(self.forward(enc))
            t_fwd += time.perf_counter() - t1
            t_tok += t1 - t0
            shapes.append(tuple(int(d) for d in enc["input_ids"].shape))
        self.log.append((len(texts), t_tok, t_fwd, shapes))
        return np.concatenate(out)

    def take_log(self) -> list[tuple[int, float, float, list[tuple[int, int]]]]:
        log, self.log = self.log, []
        return log


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _torch_peer(model_dir: Path, threads: int, max_length: int, int8: bool) -> Peer:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    if int8:
        with warnings.catch_warnings():  # torch deprecates its quantised tensors; they still run
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    def forward(enc) -> np.ndarray:
        with torch.inference_mode():
            return model(**enc).logits.softmax(-1).float().numpy()

    return Peer(f"pytorch-{'int8' if int8 else 'fp32'}", tok, forward, max_length, "pt")


def _session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


def _quant_config():
    """The dynamic int8 config optimum offers for this CPU (per-channel weights)."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni", AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
    if "avx512f" in flags:
        return "avx512", AutoQuantizationConfig.avx512(is_static=False, per_channel=True)
    return "avx2", AutoQuantizationConfig.avx2(is_static=False, per_channel=True)


def _optimum_peers(model_dir: Path, threads: int, max_length: int, workdir: Path, wanted: Sequence[str],
                   info: dict[str, dict], say: Callable[[str], None]) -> dict[str, Peer]:
    require_extra("the optimum benchmark peer", "export", ["optimum.onnxruntime"])
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    fp32_dir = workdir / "optimum-fp32"
    t0 = time.perf_counter()
    say("peers: optimum export (offline) ...")
    ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(fp32_dir)
    export_s = time.perf_counter() - t0
    peers: dict[str, Peer] = {}

    def forward_of(m):
        def forward(enc) -> np.ndarray:
            return _softmax(m(**enc).logits)
        return forward

    fp32 = ORTModelForSequenceClassification.from_pretrained(fp32_dir, session_options=_session_options(threads))
    if "optimum-fp32" in wanted:
        peers["optimum-fp32"] = Peer("optimum-fp32", tok, forward_of(fp32), max_length, "np")
        info["optimum-fp32"] = {"export_s": export_s}
    if "optimum-pipeline-fp32" in wanted:
        from transformers import pipeline

        pipe = pipeline("text-classification", model=fp32, tokenizer=tok, top_k=None)
        label_ids = {v: int(k) for k, v in fp32.config.id2label.items()}

        def predict_all(texts, batch_size):
            res = pipe(texts, batch_size=batch_size, truncation=True, max_length=max_length)
            probs = np.zeros((len(texts), len(label_ids)), np.float32)
            for i, row in enumerate(res):
                for d in row:
                    probs[i, label_ids[d["label"]]] = d["score"]
            return probs

        peers["optimum-pipeline-fp32"] = Peer("optimum-pipeline-fp32", tok, None, max_length, "np", predict_all)
        info["optimum-pipeline-fp32"] = {}
    if "optimum-int8" in wanted:
        say("peers: optimum int8 quantisation ...")
        name, config = _quant_config()
        q = ORTQuantizer.from_pretrained(fp32_dir)
        q.quantize(save_dir=workdir / "optimum-int8", quantization_config=config)
        files = sorted(p.name for p in (workdir / "optimum-int8").glob("*.onnx"))
        int8 = ORTModelForSequenceClassification.from_pretrained(workdir / "optimum-int8", file_name=files[0],
                                                                 session_options=_session_options(threads))
        peers["optimum-int8"] = Peer("optimum-int8", tok, forward_of(int8), max_length, "np")
        info["optimum-int8"] = {"quantization_config": name}
    return peers


def make_peers(checkpoint: str | os.PathLike, *, threads: int, max_length: int, only: Sequence[str] | None = None,
               say: Callable[[str], None] = lambda m: None) -> tuple[dict[str, Peer], dict[str, dict[str, Any]]]:
    """Build the peers that can run here. Returns (peers by name, info by name); a peer that
    cannot be built is reported in info with ``skipped`` and its reason."""
    model_dir = resolve_model_dir(checkpoint)
    wanted = peer_names(only)
    peers: dict[str, Peer] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in ("pytorch-fp32", "pytorch-int8"):
        if name in wanted:
            say(f"peers: {name} ...")
            try:
                peers[name] = _torch_peer(model_dir, threads, max_length, int8=name.endswith("int8"))
                info[name] = {}
            except Exception as exc:  # a peer that cannot run is reported, not fatal
                info[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    ort_wanted = [w for w in wanted if w.startswith("optimum")]
    if ort_wanted:
        workdir = Path(tempfile.mkdtemp(prefix="uehead-bench-optimum-"))
        try:
            peers.update(_optimum_peers(model_dir, threads, max_length, workdir, ort_wanted, info, say))
        except ImportError as exc:
            info.update({w: {"skipped": f"optimum not installed ({exc})"} for w in ort_wanted})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # sessions keep their graphs in memory
    versions = installed_versions(("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "tokenizers"))
    for name in peers:
        info[name].setdefault("threads", threads)
        info[name]["versions"] = versions
    return peers, info
