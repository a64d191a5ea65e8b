"""make_session: the one ONNX Runtime session builder."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from uehead.runtime.session import default_threads, make_session


def test_builds_a_cpu_session_with_the_given_options(tiny_bundle_dir):
    sess = make_session(tiny_bundle_dir / "head.onnx", threads=2, graph_optimization="basic")
    assert isinstance(sess, ort.InferenceSession)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    out = sess.run(["task_logits"], {"z": np.zeros((3, 16), np.float32)})[0]
    assert out.shape == (3, 2)


def test_defaults(tiny_bundle_dir):
    sess = make_session(tiny_bundle_dir / "backbone.onnx")
    assert sess.get_session_options().intra_op_num_threads == default_threads() >= 1
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    par = make_session(tiny_bundle_dir / "head.onnx", execution_mode="parallel", inter_op_threads=2,
                       providers=[("CPUExecutionProvider", {})])
    assert par.get_session_options().execution_mode == ort.ExecutionMode.ORT_PARALLEL


@pytest.mark.parametrize("kwargs, match", [
    ({"graph_optimization": "max"}, "graph_optimization"),
    ({"execution_mode": "async"}, "execution_mode"),
    ({"threads": 0}, "threads"),
    ({"inter_op_threads": 0}, "inter_op_threads"),
    ({"providers": ["NoSuchExecutionProvider"]}, "NoSuchExecutionProvider"),
])
def test_bad_options_are_named(tiny_bundle_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_session(tiny_bundle_dir / "head.onnx", **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        make_session(tmp_path / "nope.onnx")


def test_default_threads_counts_physical_cores_and_quota(monkeypatch):
    from uehead.runtime import session

    monkeypatch.setattr(session, "_physical_cores", lambda cpus: 3)
    monkeypatch.setattr(session, "_cgroup_cpu_quota", lambda: None)
    assert session.default_threads() == 3
    monkeypatch.setattr(session, "_cgroup_cpu_quota", lambda: 1)
    assert session.default_threads() == 1
    monkeypatch.setattr(session, "_physical_cores", lambda cpus: None)
    monkeypatch.setattr(session, "_cgroup_cpu_quota", lambda: None)
    os_ = session.os
    allowed = len(os_.sched_getaffinity(0)) if hasattr(os_, "sched_getaffinity") else os_.cpu_count()
    assert session.default_threads() == max(1, allowed)
    assert session._physical_cores([]) is None
