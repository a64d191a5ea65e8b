"""`uehead serve` under load, on loopback: throughput, latency percentiles, errors and the server's
peak RSS, against in-process ``Model.predict`` on the same texts, in one run.

    python benchmarks/bench_serve.py --bundle artifacts/bundle-fp32 [--seconds 4] [--overload-seconds 30]
                                     [--out benchmarks/results/serve.json]

Runs, each bounded by time and by request count, in this order:

1. in-process: ``load(bundle, threads=T).predict(texts, batch_size=32)`` on the benchmark texts
   (median of 3 passes; the predictions every server answer is checked against);
2. the server (``uehead serve`` in a child process) with the defaults (two batches in flight, the
   cores shared out among them), with batching off (``--no-batching``, each request its own predict
   call) and with one batch in flight on all the cores (``--inflight-batches 1``): closed-loop clients at
   concurrency 1, 8, 32, 64 with one-text and 32-text ``/classify`` requests; the first answers of
   every cell are checked against the in-process predictions;
3. the target: in interleaved rounds, in-process ``predict`` at batch 32 (on all the texts, and in
   32-text calls) against the default server at concurrency 32 with one-text requests;
4. overload: a fresh server, requests sent at twice the best texts/s measured in (2) for their
   request size, open loop, for --overload-seconds: the server must answer 503s and keep its
   resident memory bounded (sampled every 0.25 s; peak from /proc VmHWM).

The load generator (``serve_load.py``) runs in this process and shares the CPU with the server:
its CPU seconds are recorded next to the server's. The machine's load average is recorded at the
start and end (other jobs on a shared machine slow every number alike).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import closed_loop, encode_bodies, open_loop  # noqa: E402

from uehead.bench.machine import loadavg, machine_info, timestamp  # noqa: E402
from uehead.serve.config import DEFAULTS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = (1, 8, 32, 64)
#: The server configurations compared (extra ``uehead serve`` options): the defaults (two batches in
#: flight, the cores shared out among them); batching off; one batch in flight with all the cores.
SERVERS = {"batched": [], "unbatched": ["--no-batching"], "batched_one_in_flight": ["--inflight-batches", "1"]}
REQUEST_TEXTS = (1, 32)


class ServerProcess:
    """``uehead serve BUNDLE --port 0 ...`` in a child process, with its RSS sampled on demand."""

    def __init__(self, bundle: Path, threads: int | None, extra: list[str]):
        cmd = [sys.executable, "-m", "uehead", "serve", str(bundle), "--port", "0", *extra]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        self.process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        for line in self.process.stderr:
            found = re.search(r"running on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise RuntimeError(f"the server did not start: {' '.join(cmd)}")
        # keep reading its log, so that a full pipe never blocks the server
        threading.Thread(target=lambda: self.process.stderr.read(), daemon=True).start()
        self.ps = psutil.Process(self.process.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def peak_rss_mb(self) -> float | None:
        try:
            text = Path(f"/proc/{self.process.pid}/status").read_text()
            return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024
        except (OSError, AttributeError):
            return None

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def metric(url: str, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def check_answers(tally, bodies: list, probs: dict) -> float:
    """Largest |probs - in-process probs| over the first answers of a run."""
    worst = 0.0
    for index, payload in tally.first_answers:
        for row, text in zip(json.loads(payload)["predictions"], bodies[index][0]):
            worst = max(worst, float(np.max(np.abs(np.asarray(row["probs"]) - probs[text]))))
    return worst


def in_process(bundle: Path, texts: list[str], threads: int | None) -> tuple[dict, dict]:
    from uehead import runtime

    model = runtime.load(bundle, threads=threads)
    model.predict(texts[:64], batch_size=32)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        preds = model.predict(texts, batch_size=32)
        times.append(time.perf_counter() - start)
    probs = {t: p for t, p in zip(texts, preds.probs)}
    seconds = float(np.median(times))
    return {"batch_size": 32, "texts": len(texts), "seconds": round(seconds, 4),
            "texts_per_s": round(len(texts) / seconds, 1)}, probs


def run_cells(server: ServerProcess, texts: list[str], probs: dict, a) -> list[dict]:
    cells = []
    me = psutil.Process()
    for per_request in a.request_texts:
        bodies = encode_bodies(texts, per_request, max(1, len(texts) // per_request))
        for concurrency in a.concurrency:
            asyncio.run(closed_loop(server.url, bodies, concurrency, 0.3, 10_000))  # warm connections
            sums = (metric(server.url, "uehead_batch_texts_sum"), metric(server.url, "uehead_batch_texts_count"))
            cpu_server, cpu_client = server.cpu_s(), me.cpu_times().user + me.cpu_times().system
            tally = asyncio.run(closed_loop(server.url, bodies, concurrency, a.seconds, a.max_requests))
            calls = metric(server.url, "uehead_batch_texts_count") - sums[1]
            cell = {"concurrency": concurrency, **tally.summary(),
                    "mean_batch_texts": round((metric(server.url, "uehead_batch_texts_sum") - sums[0]) / calls, 2)
                    if calls else None,
                    "server_cpu_s": round(server.cpu_s() - cpu_server, 2),
                    "client_cpu_s": round(me.cpu_times().user + me.cpu_times().system - cpu_client, 2),
                    "max_abs_probs_diff": check_answers(tally, bodies, probs),
                    "server_rss_mb": round(server.rss_mb(), 1)}
            print(json.dumps(cell), file=sys.stderr)
            cells.append(cell)
    return cells


async def sample_rss(server: ServerProcess, out: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(round(server.rss_mb(), 1))
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass


def overload(bundle: Path, texts: list[str], threads: int | None, per_request: int, sustainable: float, a) -> dict:
    server = ServerProcess(bundle, threads, [])
    try:
        bodies = encode_bodies(texts, per_request, max(1, len(texts) // per_request))
        asyncio.run(closed_loop(server.url, bodies, 8, 0.5, 10_000))
        rss_before = server.rss_mb()
        rate = 2 * sustainable / per_request

        async def main():
            samples, stop = [], asyncio.Event()
            sampler = asyncio.create_task(sample_rss(server, samples, stop))
            tally = await open_loop(server.url, bodies, rate, a.overload_seconds, max_connections=a.max_connections)
            stop.set()
            await sampler
            return tally, samples

        tally, samples = asyncio.run(main())
        third = max(1, len(samples) // 3)
        return {"texts_per_request": per_request, "sustainable_texts_per_s": sustainable,
                "offered_texts_per_s": round(2 * sustainable, 1), "offered_requests_per_s": round(rate, 1),
                **tally.summary(), "rss_before_mb": round(rss_before, 1), "rss_max_mb": max(samples),
                "rss_first_third_max_mb": max(samples[:third]), "rss_last_third_max_mb": max(samples[-third:]),
                "server_peak_rss_mb": server.peak_rss_mb(), "max_queue_texts": DEFAULTS.max_queue_texts}
    finally:
        server.stop()


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(x) for x in value.split(",") if x)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def markdown_table(result: dict) -> str:
    """The README's table: texts/s and p50 / p99 latency per server, request size and concurrency."""
    levels = sorted({c["concurrency"] for c in result["batched"]["cells"]})
    lines = ["| server | texts / request | " + " | ".join(f"c = {c}" for c in levels) + " |",
             "|---|--:|" + "--:|" * len(levels)]
    for name in SERVERS:
        for per_request in sorted({c["texts_per_request"] for c in result[name]["cells"]}):
            cells = {c["concurrency"]: c for c in result[name]["cells"] if c["texts_per_request"] == per_request}
            row = [f"{cells[c]['texts_per_s']:.0f} ({_ms(cells[c]['p50_ms'])} / {_ms(cells[c]['p99_ms'])} ms)"
                   + (f", {cells[c]['errors']} errors" if cells[c]["errors"] else "") for c in levels]
            lines.append(f"| {name} | {per_request} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def target_rounds(a, texts: list[str]) -> dict:
    """The issue's target, measured in interleaved rounds so that a change in the machine's load hits
    both sides alike: in-process ``predict`` at batch 32 on all the texts (sorted by length across all
    of them) and in 32-text calls, then the default server with 32 clients sending one text each."""
    from uehead import runtime

    model = runtime.load(a.bundle, threads=a.threads)
    server = ServerProcess(a.bundle, a.threads, SERVERS["batched"])
    bodies = encode_bodies(texts, 1, len(texts))
    whole, chunked, served, errors = [], [], [], 0
    try:
        asyncio.run(closed_loop(server.url, bodies, 32, 0.5, 10_000))
        for _ in range(a.rounds):
            start = time.perf_counter()
            model.predict(texts, batch_size=32)
            whole.append(len(texts) / (time.perf_counter() - start))
            start = time.perf_counter()
            for i in range(0, len(texts), 32):
                model.predict(texts[i:i + 32], batch_size=32)
            chunked.append(len(texts) / (time.perf_counter() - start))
            tally = asyncio.run(closed_loop(server.url, bodies, 32, a.seconds, a.max_requests)).summary()
            served.append(tally["texts_per_s"])
            errors += tally["errors"]
    finally:
        server.stop()
    med = {k: float(np.median(v)) for k, v in (("whole", whole), ("chunked", chunked), ("served", served))}
    ratio = med["served"] / med["whole"]
    return {"rounds": a.rounds, "in_process_batch32_texts_per_s": [round(x, 1) for x in whole],
            "in_process_32_text_calls_texts_per_s": [round(x, 1) for x in chunked],
            "server_c32_one_text_texts_per_s": [round(x, 1) for x in served], "server_errors": errors,
            "ratio_vs_in_process_batch32": round(ratio, 3),
            "ratio_vs_in_process_32_text_calls": round(med["served"] / med["chunked"], 3),
            "needed": 0.7, "met": ratio >= 0.7 and errors == 0}


def lscpu() -> dict:
    """The CPU as ``lscpu`` names it (model, family, cores, caches); empty where lscpu is missing."""
    keep = ("Model name", "CPU family", "Model", "Thread(s) per core", "Core(s) per socket", "L2 cache",
            "L3 cache", "Hypervisor vendor")
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs if k.strip() in keep}


def busy_processes(seconds: float = 1.0, threshold: float = 10.0) -> list[dict]:
    """Other processes using more than ``threshold`` % of a CPU over ``seconds`` (what else ran)."""
    me = psutil.Process().pid
    procs = [p for p in psutil.process_iter(["pid", "name", "nice"]) if p.pid != me]
    for proc in procs:
        try:
            proc.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(seconds)
    busy = []
    for proc in procs:
        try:
            cpu = proc.cpu_percent(None)
        except psutil.Error:
            continue
        if cpu > threshold:
            busy.append({"pid": proc.pid, "name": proc.info["name"], "nice": proc.info["nice"], "cpu_percent": cpu})
    return sorted(busy, key=lambda b: -b["cpu_percent"])


def _raise_open_files(wanted: int) -> None:
    """One socket per open-loop connection: lift the soft limit on open files toward ``wanted``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="the bundle to serve (required unless --table)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads, in-process and per server model (default: each one's own default)")
    p.add_argument("--texts", type=int, default=1024, help="benchmark texts (Rotten Tomatoes test sentences)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each closed-loop cell")
    p.add_argument("--max-requests", type=int, default=50_000, help="requests per cell at most")
    p.add_argument("--concurrency", type=_ints, default=CONCURRENCY, help="closed-loop clients per cell")
    p.add_argument("--request-texts", type=_ints, default=REQUEST_TEXTS, help="texts per request")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the target comparison")
    p.add_argument("--overload-seconds", type=float, default=30.0)
    p.add_argument("--overload-texts", type=_ints, default=REQUEST_TEXTS, help="request sizes of the overload runs")
    p.add_argument("--max-connections", type=int, default=4096,
                   help="open loop: outstanding requests at most (above the queue's limit, so the server sees 503s)")
    p.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    p.add_argument("--table", type=Path, default=None, help="print the Markdown table of a result JSON and exit")
    a = p.parse_args()
    if a.table:
        print(markdown_table(json.loads(a.table.read_text())))
        return
    if a.bundle is None:
        p.error("--bundle is required")
    _raise_open_files(a.max_connections + 256)

    from uehead import runtime
    from uehead.bench.texts import model_texts

    texts = model_texts(runtime.load(a.bundle, threads=1, warmup=False), a.texts)["short"]["texts"]
    from uehead.runtime.session import default_threads

    machine = {**machine_info(a.threads or default_threads()), "lscpu": lscpu(), "busy_processes_start": busy_processes()}
    result = {"bench": "serve", "bundle": str(a.bundle), "machine": machine,
              "settings": {"seconds_per_cell": a.seconds, "max_requests_per_cell": a.max_requests,
                           "texts": len(texts), "threads": a.threads, "servers": SERVERS}}
    result["in_process"], probs = in_process(a.bundle, texts, a.threads)
    print(json.dumps(result["in_process"]), file=sys.stderr)
    for name, extra in SERVERS.items():
        server = ServerProcess(a.bundle, a.threads, extra)
        try:
            result[name] = {"options": extra, "cells": run_cells(server, texts, probs, a),
                            "server_peak_rss_mb": server.peak_rss_mb()}
        finally:
            code = server.stop()
        result[name]["exit_code"] = code
    result["target"] = target_rounds(a, texts)
    print(json.dumps(result["target"]), file=sys.stderr)
    result["overload"] = []
    for per_request in a.overload_texts:
        best = max(c["texts_per_s"] for c in result["batched"]["cells"] if c["texts_per_request"] == per_request)
        result["overload"].append(overload(a.bundle, texts, a.threads, per_request, best, a))
        print(json.dumps(result["overload"][-1]), file=sys.stderr)
    result["machine"]["busy_processes_end"] = busy_processes()
    result["machine"].update(loadavg_end=loadavg(), finished=timestamp())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"wrote {a.out}; target (c = 32, one-text requests, >= 0.7 of in-process): {result['target']}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
