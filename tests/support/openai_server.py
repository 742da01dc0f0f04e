"""A local HTTP server that speaks the OpenAI chat completions API the way vLLM serves it, for tests and offline demos.

GET /v1/models lists the base model and every LoRA module (vLLM: ``--lora-modules name=path`` makes each adapter a
model name). POST /v1/chat/completions answers with a deterministic reply that names the model and quotes the tweet,
non-streamed or streamed as server-sent events (``data: {chunk}`` lines, then ``data: [DONE]``), one word per chunk.
An unknown model gets vLLM's 404 error body. Every request body is recorded in ``server.requests``.

    with OpenAIServer(models=["Qwen/Qwen3-8B", "my-lora"]) as srv:
        client = openai.OpenAI(api_key="test", base_url=srv.url + "/v1")

Run it by hand: ``python tests/openai_server.py --port 8766`` then ``--backend openai --openai-base-url http://127.0.0.1:8766/v1``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TWEET = re.compile(r'"""\n(.*?)\n"""', re.S)


def reply_for(model: str, messages: list[dict]) -> str:
    text = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    m = _TWEET.search(text)
    tweet = (m.group(1) if m else text).strip()
    return f"[{model}] replying to: {tweet[:60]}"


class OpenAIServer:
    def __init__(self, models=("base-model",), host: str = "127.0.0.1", port: int = 0, word_delay: float = 0.0):
        self.models = list(models)
        self.requests: list[dict] = []
        self.auth: list[str] = []  # the Authorization header of every request
        self.word_delay = word_delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.auth.append(self.headers.get("authorization", ""))
                if self.path.rstrip("/") == "/v1/models":
                    return self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": m, "object": "model", "owned_by": "vllm"} for m in server.models],
                        },
                    )
                self._json(404, {"error": {"message": "Not Found", "type": "NotFoundError", "code": 404}})

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "Not Found", "type": "NotFoundError", "code": 404}})
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                server.auth.append(self.headers.get("authorization", ""))
                server.requests.append(body)
                model = body.get("model")
                if model not in server.models:
                    return self._json(
                        404,
                        {
                            "error": {
                                "message": f"The model `{model}` does not exist.",
                                "type": "NotFoundError",
                                "param": None,
                                "code": 404,
                            }
                        },
                    )
                text = reply_for(model, body.get("messages") or [])
                words = text.split(" ")[: int(body.get("max_tokens") or body.get("max_completion_tokens") or 10_000)]
                text = " ".join(words)
                rid, created = f"chatcmpl-{len(server.requests)}", int(time.time())
                if not body.get("stream"):
                    return self._json(
                        200,
                        {
                            "id": rid,
                            "object": "chat.completion",
                            "created": created,
                            "model": model,
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                            ],
                            "usage": {
                                "prompt_tokens": 10,
                                "completion_tokens": len(words),
                                "total_tokens": 10 + len(words),
                            },
                        },
                    )
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                try:
                    for i, w in enumerate(words):
                        delta = {"role": "assistant", "content": w} if i == 0 else {"content": " " + w}
                        chunk = {
                            "id": rid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        if server.word_delay:
                            time.sleep(server.word_delay)
                    end = {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                    self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away mid-stream

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "OpenAIServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--models", default="Qwen/Qwen3-8B")
    a = ap.parse_args()
    with OpenAIServer(a.models.split(","), port=a.port) as s:
        print("serving", s.url + "/v1")
        threading.Event().wait()
