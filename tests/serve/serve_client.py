"""Helpers of the server tests: an HTTP client (urllib), random texts, a model that is slow or fails
on purpose, and a server in a child process."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tiny_models import WORDS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Reply:
    status: int
    headers: dict
    body: object


def http(method: str, url: str, body=None, *, raw: bytes | None = None, headers: dict | None = None,
         timeout: float = 30.0) -> Reply:
    """One request with urllib; the JSON body parsed (text when it is not JSON)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, payload = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, payload = e.code, dict(e.headers), e.read()
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = payload.decode()
    return Reply(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


def post(url: str, body=None, **kwargs) -> Reply:
    return http("POST", url, body, **kwargs)


def get(url: str, **kwargs) -> Reply:
    return http("GET", url, **kwargs)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) for _ in range(n)]


class ModelProxy:
    """A loaded Model whose ``predict`` can wait ``delay`` seconds first, and fails for texts in
    ``poison`` (as a broken model would); every other attribute is the real model's."""

    def __init__(self, model, delay: float = 0.0, poison: frozenset = frozenset()):
        self._model, self.delay, self.poison, self.calls = model, delay, poison, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict(self, texts, **kwargs):
        self.calls.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        bad = [t for t in texts if t in self.poison]
        if bad:
            raise RuntimeError(f"poisoned text {bad[0]!r}")
        return self._model.predict(texts, **kwargs)


def child_env() -> dict:
    # An empty PYTHONPATH entry would mean the working directory (the source tree): leave none.
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [str(ROOT / "tests"), str(ROOT / "tests" / "serve"), *inherited]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


class ChildServer:
    """A server in a child process (``uehead serve`` or a script); ``url`` once it listens."""

    def __init__(self, args: list[str], timeout: float = 60.0):
        self.process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
        self.log = []
        deadline = time.monotonic() + timeout
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"running on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                # keep reading, so that a full pipe never blocks the child's logging
                self._reader = threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True)
                self._reader.start()
                return
            if time.monotonic() > deadline:
                break
        self.process.kill()
        raise RuntimeError("the server did not start:\n" + "".join(self.log))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/v2/health/ready`` answers 200 (worker processes start after the socket is bound)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if get(self.url + "/v2/health/ready", timeout=5).status == 200:
                    return
            except urllib.error.URLError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the server never became ready:\n" + "".join(self.log))
            time.sleep(0.1)

    def stop(self, sig, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        self.process.wait(timeout)
        self._reader.join(timeout)
        return self.process.returncode
