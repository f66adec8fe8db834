"""A local server that speaks OpenAI's embeddings API over a sentence-transformers model
folder, run by the product's own `relevance.local_model` (the model alone, no words).

For `bench.relevance --openai` without OpenAI: the product's own `OpenAIEmbedder` (the real
`openai` client) fetches dense vectors from it through EMBEDDING_BASE_URL, as it would from
OpenAI or any compatible server (Ollama, text-embeddings-inference). It answers
`POST /v1/embeddings` as OpenAI's API reference describes "Create embeddings"
(https://developers.openai.com/api/reference/resources/embeddings): `input` a string or a
list of strings, `encoding_format` "float" or "base64" (little-endian float32), a `list` of
`embedding` objects in input order with `usage`. Like OpenAI for models that cannot be
shortened, it refuses `dimensions`. Loopback only; any bearer key.

    .venv/bin/python -m bench.embeddings_server PATH/TO/all-MiniLM-L6-v2 --port 8765
    EMBEDDING_BASE_URL=http://127.0.0.1:8765/v1 EMBEDDING_API_KEY=local \\
    EMBEDDING_MODEL=all-MiniLM-L6-v2 EMBEDDING_DIMENSIONS=384 \\
        .venv/bin/python -m bench.relevance --openai
"""

from __future__ import annotations

import argparse
import base64
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def serve(model_path: str, name: str, port: int) -> None:
    from newsletter.relevance import local_model

    encoder = local_model.load(Path(model_path))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._answer(status, {"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": None}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/embeddings":
                return self._error(404, f"no route {self.path}")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            except ValueError:
                return self._error(400, "the body is not JSON")
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(
                    isinstance(t, str) for t in texts):
                return self._error(400, "'input' must be a string or a list of strings")
            if body.get("dimensions") is not None:
                return self._error(400, "This model does not support specifying dimensions.")
            rows = encoder.encode(texts)
            as_base64 = body.get("encoding_format") == "base64"
            data = [{"object": "embedding", "index": i,
                     "embedding": (base64.b64encode(row.astype("<f4").tobytes()).decode()
                                   if as_base64 else [float(x) for x in row])}
                    for i, row in enumerate(rows)]
            tokens = sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts))
            self._answer(200, {"object": "list", "data": data, "model": name,
                               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"serving {name} on http://127.0.0.1:{port}/v1", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a sentence-transformers model folder")
    parser.add_argument("--name", help="the model name answers carry (default: the folder's)")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    serve(args.model, args.name or args.model.rstrip("/").rsplit("/", 1)[-1], args.port)


if __name__ == "__main__":
    main()
