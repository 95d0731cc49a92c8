"""Latency and throughput of ``scripts/serve.py`` on one-row requests over 127.0.0.1.

    python lab/serve_benchmark.py lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt
    python lab/serve_benchmark.py CKPT --requests 2000 --clients 8 --seconds 20 --json reports/serve_benchmark.json

Starts the server as a user would (its own process, a free port, the default settings), waits for ``/health``, warms
up, then runs two phases, each bounded by ``--requests`` and ``--seconds``:
  sequential   one client on one keep-alive connection: latency p50/p99 of a one-row POST /predict
  concurrent   ``--clients`` clients, each on its own keep-alive connection: requests/s, and latency p50/p99 under load
Each request is a fresh row of the model's columns (``/health``'s ``inputs``), so a table model is needed. The clients
run on the same machine as the server and share its cores: the numbers bound what a remote client would see.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def wait_for_health(port: int, process: subprocess.Popen, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: the server exited with code {process.returncode} before answering /health")
        try:
            status, health = get_json(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "GET", "/health")
            if status == 200:
                return health
        except OSError:
            time.sleep(0.2)
    sys.exit(f"error: no /health answer within {timeout:.0f} s")


def random_rows(health: dict[str, Any], count: int, seed: int) -> list[bytes]:
    """``count`` one-row JSON bodies: numbers in 0-8 (iris' range, in cm), a categorical column's first level."""
    generator, levels = random.Random(seed), health.get("levels", {})
    return [json.dumps([{name: levels[name][0] if name in levels else round(generator.uniform(0, 8), 2)
                         for name in health["inputs"]}]).encode() for _ in range(count)]


def client(port: int, bodies: list[bytes], stop_at: float, latencies: list[float], failures: list[str]) -> None:
    """Sends ``bodies`` one after another on one keep-alive connection until done or ``stop_at``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body in bodies:
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            status, answer = get_json(connection, "POST", "/predict", body)
            latencies.append(time.perf_counter() - started)
            if status != 200 or len(answer.get("predictions", [])) != 1:
                failures.append(f"{status}: {answer}")
    finally:
        connection.close()


def phase(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """``bodies`` dealt round-robin to ``clients`` threads; latency percentiles and requests/s."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(port, bodies[index::clients], started + seconds, latencies[index], failures))
               for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(value for values in latencies for value in values)
    if failures or not every:
        sys.exit(f"error: {len(failures)} failed requests (first: {failures[0] if failures else 'none answered'})")
    cuts = statistics.quantiles(every, n=100, method="inclusive")
    return {"clients": clients, "requests": len(every), "seconds": round(elapsed, 3),
            "requests_per_s": round(len(every) / elapsed, 1), "p50_ms": round(cuts[49] * 1e3, 2),
            "p99_ms": round(cuts[98] * 1e3, 2), "max_ms": round(every[-1] * 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a table model's .ckpt (the iris classifier: configs/iris_mlp_classifier.yaml)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the second phase (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20, help="each phase stops after this long (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=50, help="requests sent before measuring (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), args.checkpoint, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        try:
            health = wait_for_health(port, process)
        except SystemExit:
            process.wait(timeout=10)
            print(process.stderr.read().strip(), file=sys.stderr)
            raise
        if health["kind"] != "table":
            sys.exit(f"error: {args.checkpoint} is a {health['kind']} model; the benchmark sends table rows")
        bodies = random_rows(health, args.warmup + 2 * args.requests, args.seed)
        phase(port, bodies[: args.warmup], 1, args.seconds)
        results = {"checkpoint": args.checkpoint, "machine": f"{sys.platform}, {__import__('os').cpu_count()} CPUs",
                   "sequential": phase(port, bodies[args.warmup : args.warmup + args.requests], 1, args.seconds),
                   "concurrent": phase(port, bodies[args.warmup + args.requests :], args.clients, args.seconds)}
    finally:
        process.terminate()
        process.wait(timeout=30)
    for name in ("sequential", "concurrent"):
        row = results[name]
        print(f"{name:>10}: {row['clients']} client(s), {row['requests']} requests in {row['seconds']} s: "
              f"{row['requests_per_s']} requests/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
