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
* ``optimum-pipeline-fp32``: transformers' ``pipeline("text-classification")`` over that model;
* ``optimum-o2-fp32`` / ``optimum-o3-fp32``: that export through optimum's ``ORTOptimizer`` with
  ``AutoOptimizationConfig.O2`` (ONNX Runtime's extended fusions + the transformers fusions:
  Attention, SkipLayerNormalization, BiasGelu) / ``O3`` (O2 + the fast Gelu approximation);
* ``optimum-o2-int8`` / ``optimum-o3-int8``: the O2 / O3 graph quantised like ``optimum-int8``
  (dynamic; the fused Attention becomes QAttention);
* ``optimum-static-int8``: static QDQ quantisation (the CPU's ``AutoQuantizationConfig`` with
  ``is_static=True``) with ``AutoCalibrationConfig.minmax`` over :data:`CALIBRATION_TEXTS` Rotten
  Tomatoes *train* sentences.

Each optimum peer's configuration is recorded in its info; one that optimum cannot build here is
reported as skipped with the reason.

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

__all__ = ["CALIBRATION_TEXTS", "OPTIMIZED_PEERS", "PEERS", "Peer", "calibration_texts", "make_peers"]

#: Rotten Tomatoes train sentences the static int8 peer calibrates on.
CALIBRATION_TEXTS = 128
#: The peers on optimum's graph optimiser: name -> (AutoOptimizationConfig level, dynamic int8 on top).
OPTIMIZED_PEERS = {"optimum-o2-fp32": ("O2", False), "optimum-o3-fp32": ("O3", False),
                   "optimum-o2-int8": ("O2", True), "optimum-o3-int8": ("O3", True)}


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


def _quant_config(is_static: bool = False):
    """The int8 config optimum offers for this CPU (per-channel weights): its name and the config."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni", AutoQuantizationConfig.avx512_vnni(is_static=is_static, per_channel=True)
    if "avx512f" in flags:
        return "avx512", AutoQuantizationConfig.avx512(is_static=is_static, per_channel=True)
    return "avx2", AutoQuantizationConfig.avx2(is_static=is_static, per_channel=True)


def _jsonable(v):
    """A config value as JSON: enums by name, dataclasses as dicts."""
    import dataclasses
    import enum

    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)


def calibration_texts(n: int = CALIBRATION_TEXTS, seed: int = 0) -> list[str]:
    """``n`` Rotten Tomatoes *train* sentences (never the benchmark's test texts), a fixed shuffle."""
    from uehead.datasets import load_dataset

    texts = load_dataset("rotten_tomatoes", splits=("train",))["train"].texts
    order = np.random.RandomState(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


#: What the O2 / O3 graphs go through before optimum's quantiser (see :func:`_with_value_types`).
PRE_PROCESS = ("onnxruntime.quantization.quant_pre_process(skip_optimization=True, auto_merge=True, "
               "guess_output_rank=True)")


def _with_value_types(path: Path) -> Path:
    """The optimised graph with the output types of its fused com.microsoft ops (Attention,
    SkipLayerNormalization, ...) filled in by ONNX Runtime's symbolic shape inference, beside it:
    without them optimum's quantiser stops at the first fused op ("Unable to find data type for
    weight_name")."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = path.with_name(f"{path.stem}_shapes.onnx")
    quant_pre_process(str(path), str(out), skip_optimization=True, auto_merge=True, guess_output_rank=True)
    return out


def _static_int8(fp32_dir: Path, out_dir: Path, tok, max_length: int, texts: Sequence[str]) -> tuple[Path, dict]:
    """optimum's static QDQ quantisation: MinMax calibration (``AutoCalibrationConfig.minmax``) over
    ``texts``, one sentence per calibration batch, then the CPU's static ``AutoQuantizationConfig``."""
    from types import SimpleNamespace

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    name, qconfig = _quant_config(is_static=True)
    samples = [{k: v[0] for k, v in tok(t, truncation=True, max_length=max_length, return_tensors="np").items()}
               for t in texts]
    # minmax reads only the dataset's identity; the samples themselves go to fit (no `datasets` needed)
    ident = SimpleNamespace(info=SimpleNamespace(builder_name="rotten_tomatoes", config_name=None), split="train",
                            num_rows=len(samples))
    calibration = AutoCalibrationConfig.minmax(ident)
    q = ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx")
    ranges = q.fit(dataset=samples, calibration_config=calibration, operators_to_quantize=qconfig.operators_to_quantize,
                   onnx_augmented_model_name=out_dir.parent / "augmented_model.onnx")
    q.quantize(save_dir=out_dir, quantization_config=qconfig, calibration_tensors_range=ranges)
    return out_dir / "model_quantized.onnx", {"quantization_config": name, "quantization": _jsonable(qconfig),
                                              "calibration": {**_jsonable(calibration), "texts": len(samples)}}


def _optimum_peers(model_dir: Path, threads: int, max_length: int, workdir: Path, wanted: Sequence[str],
                   info: dict[str, dict], say: Callable[[str], None]) -> dict[str, Peer]:
    require_extra("the optimum benchmark peer", "export", ["optimum.onnxruntime"])
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig
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

    def load(folder: Path, file_name: str = "model.onnx"):
        return ORTModelForSequenceClassification.from_pretrained(folder, file_name=file_name,
                                                                 session_options=_session_options(threads))

    if "optimum-fp32" in wanted or "optimum-pipeline-fp32" in wanted:
        fp32 = load(fp32_dir)
    if "optimum-fp32" in wanted:
        peers["optimum-fp32"] = Peer("optimum-fp32", tok, forward_of(fp32), max_length, "np")
        info["optimum-fp32"] = {"export_s": export_s, "optimization": None}
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
        peers["optimum-int8"] = Peer("optimum-int8", tok, forward_of(load(workdir / "optimum-int8", files[0])),
                                     max_length, "np")
        info["optimum-int8"] = {"quantization_config": name, "quantization": _jsonable(config)}

    optimized: dict[str, tuple[Path, dict]] = {}

    def optimize(level: str) -> tuple[Path, dict]:
        """optimum's ORTOptimizer at an AutoOptimizationConfig level (O2, O3), once per run."""
        if level not in optimized:
            say(f"peers: optimum ORTOptimizer {level} ...")
            config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=False)
            out = ORTOptimizer.from_pretrained(fp32_dir).optimize(config, save_dir=workdir / f"optimum-{level}")
            fused = ORTOptimizer.get_fused_operators(out / "model_optimized.onnx")
            optimized[level] = (out, {"preset": level, **_jsonable(config), "fused_operators": fused})
        return optimized[level]

    for name in [w for w in wanted if w in OPTIMIZED_PEERS]:
        level, int8 = OPTIMIZED_PEERS[name]
        try:  # a configuration optimum cannot build here is reported, not fatal
            folder, opt_info = optimize(level)
            if not int8:
                model, rec = load(folder, "model_optimized.onnx"), {"optimization": opt_info}
            else:
                say(f"peers: optimum int8 quantisation of the {level} graph ...")
                qname, config = _quant_config()
                shaped = _with_value_types(folder / "model_optimized.onnx")
                ORTQuantizer.from_pretrained(folder, file_name=shaped.name).quantize(
                    save_dir=workdir / name, quantization_config=config)
                model = load(workdir / name, f"{shaped.stem}_quantized.onnx")
                rec = {"optimization": opt_info, "quantization_config": qname, "quantization": _jsonable(config),
                       "pre_process": PRE_PROCESS}
            peers[name] = Peer(name, tok, forward_of(model), max_length, "np")
            info[name] = rec
        except Exception as exc:
            info[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
    if "optimum-static-int8" in wanted:
        say(f"peers: optimum static int8 (MinMax calibration, {CALIBRATION_TEXTS} train sentences) ...")
        try:
            path, rec = _static_int8(fp32_dir, workdir / "optimum-static-int8", tok, max_length, calibration_texts())
            peers["optimum-static-int8"] = Peer("optimum-static-int8", tok, forward_of(load(path.parent, path.name)),
                                                max_length, "np")
            info["optimum-static-int8"] = rec
        except Exception as exc:
            info["optimum-static-int8"] = {"skipped": f"{type(exc).__name__}: {exc}"}
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
