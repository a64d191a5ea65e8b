"""``uehead serve`` as users run it: options and their defaults, a bad bundle, several workers,
and the extra's import guard."""
from __future__ import annotations

import re
import signal
import subprocess
import sys

from serve_client import ROOT, child_env, get, post
from uehead.cli import build_parser

OPTIONS = ("--host", "--port", "--max-batch-texts", "--max-wait-ms", "--threads", "--workers",
           "--max-request-texts", "--max-queue-texts", "--max-body-bytes", "--request-timeout-s",
           "--predict-batch-size", "--inflight-batches", "--no-batching", "--model-name", "--access-log")


def test_every_option_states_its_default():
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    serve = sub.choices["serve"]
    for action in serve._actions:
        if action.option_strings and action.dest != "help":
            assert "(default: " in action.help, action.option_strings
    assert {o for a in serve._actions for o in a.option_strings} >= set(OPTIONS)
    args = build_parser().parse_args(["serve", "b"])
    assert (args.host, args.port, args.max_batch_texts, args.max_wait_ms, args.workers) == ("127.0.0.1", 8080, 64,
                                                                                              5.0, 1)


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "uehead", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_bad_bundle_and_bad_option_exit_2_with_a_message(tmp_path):
    out = run_cli("serve", str(tmp_path / "missing"), "--port", "0")
    assert out.returncode == 2 and "uehead serve: error:" in out.stderr, out.stderr
    out = run_cli("serve", str(tmp_path), "--max-request-texts", "10", "--max-queue-texts", "5")
    assert out.returncode == 2 and "raise --max-queue-texts" in out.stderr, out.stderr


def test_two_workers_serve_and_share_metrics(tiny_bundle_dir, child_server):
    child = child_server([sys.executable, "-m", "uehead", "serve", str(tiny_bundle_dir), "--port", "0",
                          "--workers", "2", "--threads", "1"])
    child.wait_ready()
    for i in range(6):
        reply = post(child.url + "/classify", {"texts": [f"text {i}"]})
        assert reply.status == 200, reply.body
    metrics = get(child.url + "/metrics").body
    count = re.search(r'uehead_requests_total\{endpoint="classify",status="200"\} (\S+)', metrics)
    assert count and float(count.group(1)) == 6.0, metrics
    assert child.stop(signal.SIGTERM) == 0, "".join(child.log)


def test_without_the_extra_the_error_names_the_install_command():
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'starlette':
            raise ImportError('blocked by test')
sys.meta_path.insert(0, Block())
from uehead.serve import ServeConfig   # the settings need no extra
try:
    from uehead.serve import create_app
except ImportError as e:
    print('MSG:', e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'uehead[serve]'" in out.stdout, out.stdout + out.stderr


def test_ray_serve_example_compiles_and_builds_the_same_app():
    # Ray Serve itself is not part of the tested stack: the example is compiled, not run
    source = (ROOT / "examples" / "serve_ray.py").read_text()
    compile(source, "serve_ray.py", "exec")
    assert "create_app(" in source and "__serve_build_asgi_app__" in source


def test_default_threads_share_the_cores_among_workers_and_batches():
    from uehead.runtime.session import default_threads
    from uehead.serve import ServeConfig
    from uehead.serve.runner import onnx_threads

    assert onnx_threads(ServeConfig(inflight_batches=1)) == default_threads()
    assert onnx_threads(ServeConfig()) == max(1, default_threads() // 2)  # two batches in flight by default
    assert onnx_threads(ServeConfig(workers=2, inflight_batches=2)) == max(1, default_threads() // 4)
    assert onnx_threads(ServeConfig(threads=3, workers=2)) == 3
