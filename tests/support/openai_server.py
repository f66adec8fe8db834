"""A local OpenAI-compatible chat completions server, so the real `openai` client runs.

It speaks `POST /v1/chat/completions` (JSON in, a `chat.completion` object out) and the
error shapes the client maps to exceptions. What it answers is decided per call by a
`Script`: a function of the parsed request and the number of calls already made for the
same paper (identified by the title in the prompt). `good_card` writes a well-formed card
from the request's own abstract, so an answer always matches the paper it is for.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.http import Reply, Request, ScriptedServer


@dataclass(frozen=True)
class Call:
    """One chat completions request, parsed."""

    body: dict[str, Any]
    title: str
    abstract: str
    number: int  # 1 for the first call about this paper, 2 for its first retry, ...

    @property
    def prompt(self) -> str:
        return "\n".join(m.get("content", "") for m in self.body.get("messages", []))


Script = Callable[[Call], Reply]


def tokens(text: str) -> int:
    # No tokenizer is installed here; 4 characters per token is OpenAI's rule of thumb
    # for English text, and the same estimate is applied to every request.
    return max(1, math.ceil(len(text) / 4))


_ids = itertools.count(1)


def completion(
    call: Call,
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    delay: float = 0.0,
) -> Reply:
    """A 200 `chat.completion` with usage counted from the prompt and the answer."""
    answer = content or refusal or ""
    body = {
        "id": f"chatcmpl-local-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": call.body.get("model", "unknown"),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish_reason,
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": tokens(call.prompt),
            "completion_tokens": tokens(answer),
            "total_tokens": tokens(call.prompt) + tokens(answer),
        },
    }
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"},
                 delay=delay)


def error(status: int, message: str, headers: dict[str, str] | None = None,
          delay: float = 0.0) -> Reply:
    body = {"error": {"message": message, "type": "server_error" if status >= 500 else
                      "invalid_request_error", "param": None, "code": None}}
    return Reply(status, json.dumps(body).encode(),
                 {"Content-Type": "application/json", **(headers or {})}, delay=delay)


def card_dict(call: Call, **changes: Any) -> dict[str, Any]:
    """A valid card built from the paper in the request (its own words, reordered)."""
    words = re.findall(r"[A-Za-z][A-Za-z-]+", call.abstract) or ["paper"]

    def text(n: int, offset: int) -> str:
        picked = [words[(offset + i) % len(words)] for i in range(n)]
        return " ".join(picked).capitalize() + "."

    schema = call.body["response_format"]["json_schema"]["schema"]
    allowed = schema["properties"]["topics"]["items"]["enum"]
    card = {
        "topics": [allowed[len(call.title) % len(allowed)]],
        "key_points": [text(12, 3 * i) for i in range(4)],
        "summary": text(150, len(words) - 150),  # ends with the abstract's last words
        "methodology": text(55, 2),
        "results": text(45, 5),
        "implications": text(45, 7),
    }
    card.update(changes)
    return card


def good_card(call: Call, delay: float = 0.0) -> Reply:
    return completion(call, json.dumps(card_dict(call)), delay=delay)


def _parse(request: Request) -> tuple[dict[str, Any], str, str]:
    body = json.loads(request.body or b"{}")
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    title = re.search(r"^Title: (.*)$", user, re.MULTILINE)
    abstract = user.split("Abstract:\n", 1)[1] if "Abstract:\n" in user else ""
    return body, title.group(1) if title else "", abstract


class OpenAIServer(ScriptedServer):
    """Serves `script(call)` on /v1/chat/completions; `calls` records every parsed call."""

    def __init__(self, script: Script = good_card, api_key: str = "test-key") -> None:
        self.script = script
        self.api_key = api_key
        self.calls: list[Call] = []
        self._per_paper: Counter[str] = Counter()
        self._lock = threading.Lock()
        super().__init__(self._respond)
        # A short poll so that stopping the server does not cost each test half a second.
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def calls_for(self, title: str) -> list[Call]:
        return [c for c in self.calls if c.title == title]

    def _respond(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return error(404, f"no route {request.method} {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided")
        try:
            body, title, abstract = _parse(request)
        except (ValueError, KeyError) as exc:
            return error(400, f"bad request body: {exc}")
        with self._lock:
            self._per_paper[title] += 1
            call = Call(body=body, title=title, abstract=abstract,
                        number=self._per_paper[title])
            self.calls.append(call)
        return self.script(call)
