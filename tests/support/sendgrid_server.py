"""A local SendGrid v3 `POST /v3/mail/send` server, so the real `sendgrid` client runs.

It checks what SendGrid checks and answers as SendGrid does (status, JSON
`{"errors": [{"message", "field", "help"}]}`), records what it accepted, and misbehaves
on request.

    with SendGridServer(api_key="test") as sg:
        sender = SendGridSender("test", "Paperwire <digest@example.org>", host=sg.url)
        sg.fail_next(status=429, times=2, headers={"X-RateLimit-Reset": str(reset)})
        sender.send_batch(batch)
        sg.requests          # every request, answered or not: list[Received]
        sg.messages          # every accepted message, one per personalization: list[Delivered]
        sg.recipient_counts()   # Counter: address -> messages it got
        sg.messages_for("a@example.org")

Constructor: `SendGridServer(api_key="test", *, max_bytes=20 MiB, verified_senders=None,
record=True)`. `verified_senders` (addresses) makes any other `from` a 403 like an
unverified Sender Identity; `record=False` keeps requests (without their bodies) and
`recipient_counts()` but no messages, for benchmarks that must not hold every message.

Checks (each a 400 unless said): `Authorization: Bearer <api_key>` (401); the body is JSON
no larger than `max_bytes` (413); `personalizations` holds 1..1,000 objects, each with a
non-empty `to`; valid addresses; an address (case-insensitive) at most once across every
to/cc/bcc of the request; at most 1,000 recipients in all; `from.email`; a subject, top
level or in every personalization; `content` non-empty, values non-empty strings,
text/plain before text/html; `headers` (top level and per personalization) string to
string and none of SendGrid's reserved names (To, From, Subject, Content-Type, X-SG-ID,
...); `substitutions` and `custom_args` string to string, each at most 10,000 bytes per
personalization. `mail_settings.sandbox_mode.enable` answers 200 and records no message,
as SendGrid does. Success is 202 with an empty body and an `X-Message-Id` header.

Delivered messages apply the personalization's substitutions (one pass, longest tag first,
values not rescanned) to the subject, text and html, then the request's top-level
`sections` (string to string) to the text and html, merge top-level and personalization
headers and custom_args (personalization wins), and are expanded only when read.

Faults, consumed one per request in order (a `Fault` is applied instead of the normal
handling; `Fault.deliver` records the messages as accepted first, i.e. SendGrid took the
request but its answer was lost):
- `fail_next(status, times=1, headers=None, message=None, deliver=False)`: answer `status`
  with a SendGrid-style error body (e.g. 429 with `X-RateLimit-Reset`, 500, 503).
- `stall_next(seconds, times=1, deliver=False)`: hold the answer `seconds` (longer than the
  client's timeout), then hang up.
- `reset_next(times=1, deliver=False)`: close the connection without answering (RST).
- `inject(fault, times=1)`: any `Fault(status, headers, message, delay, reset, deliver)`;
  `status=None` means the normal answer (e.g. `Fault(delay=0.5)`: accepted, answered late).
- `on_request`: a callable `(Received) -> Fault | None` asked first for every request, e.g.
  "accept requests 1..N, then take request N+1 but lose its answer, then be down":

      sg.on_request = lambda r: (
          None if r.index <= n else Fault(reset=True, deliver=r.index == n + 1))

  To crash the *sender* after N requests, make its injected `sleep` (called before each
  retry) raise, or stop calling it from the test after N batches.
Stalled answers end early and hang up when the server stops, so no test waits on them.
`clear()` forgets recorded requests and messages and pending faults.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_BYTES = 20 * 1024 * 1024
MAX_ARGS_BYTES = 10_000  # substitutions, and custom_args, per personalization
# Headers SendGrid sets itself and refuses in `headers` (compared case-insensitively).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "X-SG-ID", "X-SG-EID", "Received", "DKIM-Signature", "Content-Type",
        "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC", "Date",
    )
)
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")

STATUS_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "Payload Too Large",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one request; `status=None` means the normal answer."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None  # the error message; defaults to SendGrid's for the status
    delay: float = 0.0  # seconds to hold the answer
    reset: bool = False  # after the delay, close the connection without answering
    deliver: bool = False  # process (validate, record) the request first


@dataclass
class Received:
    """One HTTP request as the server saw it, and what it answered."""

    index: int  # 1 for the first request since start (or clear())
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    size: int
    payload: Any = None  # the parsed JSON body (None when unparsable or record=False)
    status: int | None = None  # what was answered; None while pending or when it hung up
    errors: list[dict[str, Any]] = field(default_factory=list)
    fault: Fault | None = None
    message_id: str | None = None
    personalizations: int = 0

    @property
    def answered(self) -> bool:
        return self.status is not None


@dataclass
class Delivered:
    """One accepted message: one personalization of an accepted request."""

    request: int  # Received.index
    message_id: str
    from_email: str
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    headers: dict[str, str]
    custom_args: dict[str, str]
    substitutions: dict[str, str]
    # The request's top-level sections: shared blocks the substitutions may name.
    sections: dict[str, str]
    raw_subject: str
    content: tuple[tuple[str, str], ...]  # (type, value) before substitution

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc

    @cached_property
    def subject(self) -> str:
        return substitute(self.raw_subject, self.substitutions)

    @cached_property
    def text(self) -> str | None:
        return self._part("text/plain")

    @cached_property
    def html(self) -> str | None:
        return self._part("text/html")

    def _part(self, kind: str) -> str | None:
        for ctype, value in self.content:
            if ctype == kind:
                # SendGrid's order: substitutions, then the sections they brought in.
                return substitute(substitute(value, self.substitutions), self.sections)
        return None


def substitute(template: str, substitutions: Mapping[str, str]) -> str:
    """Replace every tag in one pass, longest tag first; filled values are not rescanned."""
    if not substitutions:
        return template
    pattern = "|".join(re.escape(tag) for tag in sorted(substitutions, key=len, reverse=True))
    return re.sub(pattern, lambda m: substitutions[m.group(0)], template)


def _error(message: str, field_name: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _size(mapping: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _check_headers(value: object, where: str, errors: list[dict[str, Any]]) -> None:
    if not isinstance(value, dict):
        errors.append(_error("Invalid type. Expected: object, given: "
                             f"{type(value).__name__}.", where))
        return
    for name, val in value.items():
        if not isinstance(val, str):
            errors.append(_error("Invalid type. Expected: string, given: "
                                 f"{type(val).__name__}.", f"{where}.{name}"))
        if name.lower() in RESERVED_HEADERS:
            errors.append(_error(f"The header {name!r} is reserved and cannot be set "
                                 "in headers; use the matching mail/send field.",
                                 f"{where}.{name}"))


def _check_args(value: object, where: str, errors: list[dict[str, Any]]) -> None:
    if not isinstance(value, dict) or not _is_str_map(value):
        errors.append(_error(f"The {where.rsplit('.', 1)[-1]} values must be strings.", where))
    elif _size(value) > MAX_ARGS_BYTES:
        errors.append(_error(f"The {where.rsplit('.', 1)[-1]} may not exceed "
                             f"{MAX_ARGS_BYTES} bytes per personalization.", where))


def validate(payload: object) -> list[dict[str, Any]]:
    """SendGrid's checks on a mail/send body: the errors it would answer 400 with."""
    if not isinstance(payload, dict):
        return [_error("Bad Request: the body must be a JSON object.")]
    errors: list[dict[str, Any]] = []
    if "template_id" in payload:
        # Dynamic templates are rendered by SendGrid; this server cannot, so say so.
        errors.append(_error("template_id is not supported by this test server.",
                             "template_id"))
    pers = payload.get("personalizations")
    if not isinstance(pers, list) or not pers:
        errors.append(_error("The personalizations field is required and must have at "
                             "least one personalization.", "personalizations"))
        pers = []
    elif len(pers) > MAX_PERSONALIZATIONS:
        errors.append(_error(f"The personalizations field may have at most "
                             f"{MAX_PERSONALIZATIONS} personalizations.", "personalizations"))
    seen: set[str] = set()
    total = 0
    duplicate_reported = False
    for i, p in enumerate(pers):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            errors.append(_error("Invalid type. Expected: object.", where))
            continue
        if not isinstance(p.get("to"), list) or not p["to"]:
            errors.append(_error("The to array is required for all personalization objects, "
                                 "and must have at least one email object with a valid "
                                 "email address.", f"{where}.to"))
        for kind in ("to", "cc", "bcc"):
            group = p.get(kind, [])
            if not isinstance(group, list):
                errors.append(_error("Invalid type. Expected: array.", f"{where}.{kind}"))
                continue
            for j, addr in enumerate(group):
                email = addr.get("email") if isinstance(addr, dict) else None
                if not isinstance(email, str) or not _EMAIL.fullmatch(email):
                    errors.append(_error("Does not contain a valid address.",
                                         f"{where}.{kind}.{j}.email"))
                    continue
                total += 1
                key = email.lower()
                if key in seen and not duplicate_reported:
                    duplicate_reported = True  # SendGrid names the first duplicate only
                    errors.append(_error(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{email}] in the {where}.{kind} field.", f"{where}.{kind}"))
                seen.add(key)
        if "subject" in p and not isinstance(p["subject"], str):
            errors.append(_error("Invalid type. Expected: string.", f"{where}.subject"))
        if "headers" in p:
            _check_headers(p["headers"], f"{where}.headers", errors)
        for name in ("substitutions", "custom_args"):
            if name in p:
                _check_args(p[name], f"{where}.{name}", errors)
    sections = payload.get("sections", {})
    if not isinstance(sections, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in sections.items()
    ):
        errors.append(_error("Invalid type. Expected: object of strings.", "sections"))
    if total > MAX_RECIPIENTS:
        errors.append(_error("The total number of recipients must be no more than 1000. This "
                             "includes all recipients defined within the to, cc, and bcc "
                             "parameters, across each object that you include in the "
                             "personalizations array.", "personalizations"))
    sender = payload.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(_error("The from object must be provided for every email send. It is "
                             "an object that requires the email parameter, but may also "
                             "contain a name parameter.", "from"))
    elif not isinstance(sender["email"], str) or not _EMAIL.fullmatch(sender["email"]):
        errors.append(_error("The from email does not contain a valid address.", "from.email"))
    subject = payload.get("subject")
    every_own = bool(pers) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in pers
    )
    if not (isinstance(subject, str) and subject) and not every_own:
        errors.append(_error("The subject is required. You can get around this requirement "
                             "if you use a template with a subject defined or if every "
                             "personalization has a subject defined.", "subject"))
    _check_content(payload.get("content"), errors)
    if "headers" in payload:
        _check_headers(payload["headers"], "headers", errors)
    if "custom_args" in payload:
        _check_args(payload["custom_args"], "custom_args", errors)
    return errors


def _check_content(content: object, errors: list[dict[str, Any]]) -> None:
    if not isinstance(content, list) or not content:
        errors.append(_error("Unless a valid template_id is provided, the content parameter "
                             "is required. There must be at least one defined content block.",
                             "content"))
        return
    types: list[str] = []
    for i, part in enumerate(content):
        ctype = part.get("type") if isinstance(part, dict) else None
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(ctype, str) or not ctype:
            errors.append(_error("The content type must be a string at least one character "
                                 "in length.", f"content.{i}.type"))
        if not isinstance(value, str) or not value:
            errors.append(_error("The content value must be a string at least one character "
                                 "in length.", f"content.{i}.value"))
        types.append(ctype if isinstance(ctype, str) else "")
    # text/plain must come first when present, then text/html, then any other type.
    order = [t for t in types if t in ("text/plain", "text/html")]
    if order and types[: len(order)] != sorted(order, key=["text/plain", "text/html"].index):
        errors.append(_error("If present, text/plain and text/html may only be provided in "
                             "this order: text/plain, text/html, then any other type.",
                             "content"))


class SendGridServer:
    """A SendGrid-compatible mail/send endpoint on a free loopback port, in a thread."""

    def __init__(
        self,
        api_key: str = "test",
        *,
        max_bytes: int = MAX_BYTES,
        verified_senders: Iterable[str] | None = None,
        record: bool = True,
    ) -> None:
        self.api_key = api_key
        self.max_bytes = max_bytes
        self.verified_senders = (
            None if verified_senders is None else {a.lower() for a in verified_senders}
        )
        self.record = record
        self.requests: list[Received] = []
        self.messages: list[Delivered] = []
        # Kept even with record=False: addresses are cheap, whole messages are not.
        self._counts: Counter[str] = Counter()
        self.on_request: Callable[[Received], Fault | None] | None = None
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SendGridServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # releases stalled answers: they hang up instead
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- scripting ---------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def fail_next(
        self,
        status: int,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        deliver: bool = False,
    ) -> None:
        self.inject(Fault(status=status, headers=dict(headers or {}), message=message,
                          deliver=deliver), times)

    def stall_next(self, seconds: float, times: int = 1, deliver: bool = False) -> None:
        self.inject(Fault(delay=seconds, reset=True, deliver=deliver), times)

    def reset_next(self, times: int = 1, deliver: bool = False) -> None:
        self.inject(Fault(reset=True, deliver=deliver), times)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.messages.clear()
            self._counts.clear()
            self._faults.clear()

    # -- reading what happened -----------------------------------------------------------

    def recipient_counts(self) -> Counter[str]:
        """Messages per address (lower-cased), across to, cc and bcc."""
        with self._lock:
            return Counter(self._counts)

    def messages_for(self, address: str) -> list[Delivered]:
        key = address.lower()
        with self._lock:
            return [m for m in self.messages if key in (a.lower() for a in m.recipients)]

    @property
    def accepted_requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    # -- handling ----------------------------------------------------------------------

    def _next_fault(self, received: Received) -> Fault | None:
        hook = self.on_request
        fault = hook(received) if hook else None
        if fault is None:
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
        return fault

    def _process(
        self, received: Received, body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """SendGrid's answer to a request that got through: (status, headers, JSON body)."""
        if received.method != "POST":
            return 405, {}, {"errors": [_error(STATUS_MESSAGES[405])]}
        if received.path.rstrip("/") != "/v3/mail/send":
            return 404, {}, {"errors": [_error(STATUS_MESSAGES[404])]}
        auth = received.headers.get("authorization", "")
        if not auth:
            return 401, {}, {"errors": [_error("authorization required")]}
        if auth != f"Bearer {self.api_key}":
            return 401, {}, {"errors": [_error(STATUS_MESSAGES[401])]}
        if received.size > self.max_bytes:
            return 413, {}, {"errors": [_error(
                f"The JSON payload you have included in your request is too large: "
                f"{received.size} bytes, the limit is {self.max_bytes}.")]}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {}, {"errors": [_error("Bad Request: the body is not valid JSON.")]}
        if self.record:
            received.payload = payload
        errors = validate(payload)
        if errors:
            received.errors = errors
            return 400, {}, {"errors": errors}
        sender = payload["from"]
        if (self.verified_senders is not None
                and sender["email"].lower() not in self.verified_senders):
            return 403, {}, {"errors": [_error(
                "The from address does not match a verified Sender Identity. Mail cannot be "
                "sent until this error is resolved.", "from")]}
        received.personalizations = len(payload["personalizations"])
        sandbox = payload.get("mail_settings", {}).get("sandbox_mode", {}).get("enable")
        if sandbox:
            return 200, {}, None  # validated, not sent: nothing to record
        message_id = secrets.token_urlsafe(16)
        received.message_id = message_id
        addresses = [a["email"].lower() for p in payload["personalizations"]
                     for kind in ("to", "cc", "bcc") for a in p.get(kind, [])]
        with self._lock:
            self._counts.update(addresses)
        if self.record:
            delivered = self._expand(received.index, message_id, payload)
            with self._lock:
                self.messages.extend(delivered)
        return 202, {"X-Message-Id": message_id}, None

    @staticmethod
    def _expand(index: int, message_id: str, payload: dict[str, Any]) -> list[Delivered]:
        content = tuple((c["type"], c["value"]) for c in payload["content"])
        sender = payload["from"]
        out = []
        for p in payload["personalizations"]:
            def emails(kind: str, p: dict[str, Any] = p) -> tuple[str, ...]:
                return tuple(a["email"] for a in p.get(kind, []))

            out.append(Delivered(
                request=index,
                message_id=message_id,
                from_email=sender["email"],
                from_name=sender.get("name"),
                to=emails("to"),
                cc=emails("cc"),
                bcc=emails("bcc"),
                headers={**payload.get("headers", {}), **p.get("headers", {})},
                custom_args={**payload.get("custom_args", {}), **p.get("custom_args", {})},
                substitutions=p.get("substitutions", {}),
                sections=payload.get("sections", {}),
                raw_subject=p.get("subject") or payload["subject"],
                content=content,
            ))
        return out

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                # Read (or drain) the whole body even when refusing it: closing with unread
                # data makes the kernel reset the connection, which the client would take
                # for a network fault (and retry) instead of reading the 413.
                body = b""
                if size > server.max_bytes:
                    remaining = size
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                else:
                    body = self.rfile.read(size) if size else b""
                with server._lock:
                    received = Received(
                        index=len(server.requests) + 1,
                        method=self.command,
                        path=self.path.split("?", 1)[0],
                        headers={k.lower(): v for k, v in self.headers.items()},
                        size=size,
                    )
                    server.requests.append(received)
                fault = server._next_fault(received)
                received.fault = fault
                answer = None
                if fault is None or fault.deliver or (fault.status is None and not fault.reset):
                    answer = server._process(received, body)
                if fault is not None and fault.delay and server._stopping.wait(fault.delay):
                    self._hang_up()  # the server is stopping: nobody waits for this answer
                    return
                if fault is not None and fault.reset:
                    self._hang_up()
                    return
                if fault is not None and fault.status is not None:
                    message = fault.message or STATUS_MESSAGES.get(fault.status, "error")
                    answer = (fault.status, dict(fault.headers),
                              {"errors": [_error(message)]})
                assert answer is not None
                status, headers, payload = answer
                if fault is not None and fault.status is None:
                    headers = {**headers, **fault.headers}
                received.status = status
                data = json.dumps(payload).encode() if payload is not None else b""
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    if data:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timed out) before the answer came

            def _hang_up(self) -> None:
                # SO_LINGER 0: close with a TCP RST, as a crashed proxy would.
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        return Handler
