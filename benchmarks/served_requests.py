"""Benchmark: requests to a real `transformers serve` with a tiny Qwen2-VL, through the served client.

Builds the tiny random-weight Qwen2-VL (offline), starts `tests/served_server.py` (transformers'
own OpenAI-compatible server, CPU, one torch thread) on a free loopback port, and sends --requests
one-image chat requests (``max_tokens`` --max-tokens, greedy) through ``ServedClient`` at each
--concurrency; then the same requests again (all from the request cache). Prints the server's
start-up time, milliseconds per request (wall time / requests, and the mean of each request's own
time) per concurrency, and the cache-hit time. Timings on a shared machine move with its load
(printed). Stops the server by its pid.

    PYTHONPATH=src python benchmarks/served_requests.py [--requests 24] [--concurrency 1 2 4] [--max-tokens 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()

    from PIL import Image

    from prompt_reliability.scoring.served import ServedClient, user_turn
    from prompt_reliability.scoring.tiny_models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="served-bench-") as tmp:
        folder = Path(tmp)
        build_tiny_model(folder / "qwen2_vl", "qwen2_vl", seed=0)
        images = []
        for i in range(args.requests):
            path = folder / f"img{i}.png"
            Image.new("RGB", (32, 32), (i * 9 % 256, 80, 160)).save(path)
            images.append(path)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, str(REPO / "tests/served_server.py"), str(folder / "qwen2_vl"), str(port),
                                   str(folder / "requests.log")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.perf_counter() - started > 300:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; server up in "
                  f"{time.perf_counter() - started:.1f} s")
            cfg = {"url": f"http://127.0.0.1:{port}/v1", "model": str(folder / "qwen2_vl"), "api_key_env": None,
                   "timeout_s": 120, "max_retries": 2, "backoff_s": 0.5, "extra_body": {}, "logprobs": "none"}
            for concurrency in args.concurrency:
                client = ServedClient.from_config("bench", {**cfg, "concurrency": concurrency}, folder / f"c{concurrency}.jsonl")
                conversations = [[user_turn(f"Describe image {i} (run {concurrency}).", [image])] for i, image in enumerate(images)]
                client.replies(conversations, max_tokens=args.max_tokens)
                sent = client.stats.as_dict()
                clock = time.perf_counter()
                client.replies(conversations, max_tokens=args.max_tokens)
                cached = time.perf_counter() - clock
                print(f"concurrency {concurrency}: {args.requests} requests in {sent['seconds']:.2f} s = "
                      f"{1000 * sent['seconds'] / args.requests:.0f} ms per request (wall), "
                      f"{1000 * sent['seconds_per_request']:.0f} ms each (mean own time); again from the cache: "
                      f"{1000 * cached:.0f} ms for all {args.requests}")
        finally:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    main()
