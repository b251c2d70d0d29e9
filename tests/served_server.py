"""``transformers serve`` on loopback with a request log, for the served-model tests.

    python tests/served_server.py MODEL_FOLDER PORT REQUEST_LOG [DELAY_S]

Runs transformers' own OpenAI-compatible server (``transformers serve``, CPU) with one middleware
added: every POST to ``/v1/chat/completions`` appends a line to REQUEST_LOG when it arrives, before
the model answers: the SHA-256 of the raw body received, the ``X-Request-ID`` header, and whether
the ``Authorization`` header equals ``Bearer $SERVED_TEST_EXPECTED_KEY`` (the key itself is not
written). DELAY_S (default 0) holds each request that long first, so a test can kill the server
while a run is in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

from transformers.cli.serving import server as serving_server


def main() -> None:
    model, port, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    expected = os.environ.get("SERVED_TEST_EXPECTED_KEY")
    build_server = serving_server.build_server

    def build_with_request_log(*args, **kwargs):
        app = build_server(*args, **kwargs)

        @app.middleware("http")
        async def request_log(request, call_next):
            if request.method == "POST" and request.url.path.endswith("/chat/completions"):
                body = await request.body()
                auth = request.headers.get("authorization")
                key_state = "no-key" if auth is None else ("key-ok" if expected and auth == f"Bearer {expected}" else "key-wrong")
                with open(log_path, "a") as handle:
                    handle.write(f"{hashlib.sha256(body).hexdigest()} {request.headers.get('x-request-id', '-')} {key_state}\n")
                if delay:
                    await asyncio.sleep(delay)
            return await call_next(request)

        return app

    serving_server.build_server = build_with_request_log  # serve.py imports it from the module when it starts
    from transformers.cli.serve import Serve

    Serve(force_model=model, host="127.0.0.1", port=port, device="cpu", log_level="warning")


if __name__ == "__main__":
    main()
