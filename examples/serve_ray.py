"""The `uehead serve` app as a Ray Serve deployment: N replicas, each with its own model, its own
dynamic batcher and the same endpoints (/classify, /predict, /v2/..., /metrics).

    pip install 'uehead[serve,ray]' 'ray[serve]==2.60.0'     # Ray Serve needs its own extra on top of [ray]
    python examples/serve_ray.py BUNDLE [--replicas 2] [--threads 1] [--port 8000]
    curl -s localhost:8000/classify -d '{"texts": ["a great film"]}'

Ray Serve's proxy spreads requests over the replicas; inside each replica the uehead batcher merges
what that replica receives, exactly as a single `uehead serve` process does. Give each replica as
many CPUs as its ONNX Runtime threads (``num_cpus``), so replicas x threads <= cores. Ray's proxy
adds a hop per request; for one machine, `uehead serve --workers N` is lighter (see docs/serving.md).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ray import serve

from uehead.serve import ServeConfig


@serve.ingress()
class UeheadReplica:
    """One replica: loads the bundle and builds the uehead ASGI app when Ray starts it."""

    def __init__(self, bundle: str, config_json: str):
        self.bundle = bundle
        self.config = ServeConfig.from_json(config_json)

    def __serve_build_asgi_app__(self):
        from uehead import runtime
        from uehead.serve import create_app

        return create_app(runtime.load(self.bundle, threads=self.config.threads), self.config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--replicas", type=int, default=2, help="model replicas (default: 2)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per replica (default: 1)")
    p.add_argument("--port", type=int, default=8000, help="Ray Serve's HTTP port (default: 8000)")
    a = p.parse_args()
    config = ServeConfig(threads=a.threads, model_name=a.bundle.name)
    deployment = serve.deployment(UeheadReplica, name="uehead", num_replicas=a.replicas,
                                  ray_actor_options={"num_cpus": a.threads})
    serve.start(http_options={"host": "127.0.0.1", "port": a.port})
    serve.run(deployment.bind(str(a.bundle.resolve()), config.to_json()), route_prefix="/")
    print(f"serving {a.bundle} on http://127.0.0.1:{a.port} with {a.replicas} replicas; Ctrl+C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


if __name__ == "__main__":
    main()
