"""A local SendGrid v3 server (Mail Send and the Templates API), so the real client runs.

It follows SendGrid's documentation, not Paperwire's assumptions: it checks what the
documentation says SendGrid checks, answers as SendGrid does (status, JSON
`{"errors": [{"message", "field", "help"}]}`), renders dynamic templates with a real
Handlebars implementation (pybars3) limited to the helpers SendGrid documents, records what
it accepted, and misbehaves on request. Each rule cites the page it comes from:

- MAIL: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send (the request
  body; its OpenAPI form is github.com/twilio/sendgrid-oai, spec/yaml/tsg_mail_v3.yaml)
- LIMITS: https://www.twilio.com/docs/sendgrid/api-reference/mail-send#limitations
- ERRORS: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors
- SECTIONS: https://www.twilio.com/docs/sendgrid/for-developers/sending-email/section-tags
  ("deprecated and has been removed"; retired on 13 August 2020)
- HANDLEBARS: https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars
- TEMPLATES: https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates
  (and -versions; OpenAPI: spec/yaml/tsg_templates_v3.yaml)
- VERSIONS: https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions
  ("Each user can have up to 300 versions across all templates")
- VERSION DELETE: https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions/delete-a-transactional-template-version

    with SendGridServer(api_key="test") as sg:
        sender = SendGridSender("test", "Paperwire <digest@example.org>", host=sg.url)
        sender.sync()                   # the Templates API calls `newsletter sendgrid sync` makes
        sg.fail_next(status=429, times=2, headers={"X-RateLimit-Reset": str(reset)})
        sender.send_batch(batch)
        sg.requests          # every mail/send request, answered or not: list[Received]
        sg.api_requests      # every Templates API request
        sg.messages          # every accepted message, one per personalization: list[Delivered]
        sg.recipient_counts()   # Counter: address -> messages it got
        sg.messages_for("a@example.org")[0].html   # rendered as SendGrid would

Constructor: `SendGridServer(api_key="test", *, max_bytes=30 MB, verified_senders=None,
record=True)`. `verified_senders` (addresses) makes any other `from` a 403 like an
unverified Sender Identity. `record=False` is the benchmark's cheap mode: every request is
still checked against every limit, but bodies and messages are not kept (so nothing is
rendered); `requests` (without payloads) and `recipient_counts()` are.

Mail Send checks, each a 400 unless said (several errors are reported at once, as SendGrid
does): `Authorization: Bearer <api_key>` (401); the body under `max_bytes` (413, LIMITS);
JSON; only the documented top-level and personalization fields, `sections` refused as
retired (MAIL, SECTIONS; stricter than SendGrid may be about other unknown fields, so that
a misspelt field fails here instead of being ignored there); 1..1,000 personalizations,
each with a non-empty `to`, at most 1,000 recipients in all, valid addresses, an address
at most once per request (ERRORS); `from.email`; `reply_to` and `reply_to_list` not both
(MAIL); a subject, unless a template supplies one or every personalization has one;
`content` unless a template is used, values non-empty, text/plain before text/html
(ERRORS); `headers` string to string and none of the reserved names (MAIL); `custom_args`
string to string, at most 10,000 bytes (MAIL, LIMITS); `tracking_settings` only the
documented settings (click_tracking, open_tracking, subscription_tracking, ganalytics), each
an object of its documented fields with booleans and strings where MAIL has them (a
message records its request's settings: `Delivered.tracked("click_tracking")`);
`substitutions` string to string, at
most 10,000 bytes, and never with a dynamic template ("Substitutions may not be used with
dynamic templating", SendGrid's own message); `dynamic_template_data` an object, only with
a dynamic (`d-`) template, at most 10,000 bytes per personalization (the cap SendGrid's
client libraries document); `template_id` naming a template of this account with an active
version. `mail_settings.sandbox_mode.enable` answers 200 and records nothing. Success is 202
with an empty body and an `X-Message-Id` header.

Templates API (TEMPLATES): `POST /v3/templates` (name <= 100 characters, generation legacy or
dynamic; dynamic ids start with `d-`; at most 300 per account), `GET /v3/templates`
(`page_size` 1..200 required, `generations`, `page_token`), `GET /v3/templates/{id}`,
`POST /v3/templates/{id}/versions` (name and subject required, <= 100 and <= 255
characters; html_content and plain_content <= 1,048,576 bytes; at most 300 versions across
all the account's templates, VERSIONS; the first version, or one posted with `active: 1`,
becomes the active one; `generate_plain_content` defaults to true and then derives the text
from the HTML), `POST .../versions/{vid}/activate`, `DELETE .../versions/{vid}` (204, VERSION
DELETE; the active version is refused here, as the version SendGrid sends with). A dynamic
template version must parse as Handlebars and use only SendGrid's helpers (an unknown helper
is a 400 here; SendGrid's own behaviour for one is not documented).

Delivered messages: for a template send, the active version at the time of the request,
rendered with the personalization's `dynamic_template_data` (subject, text, HTML); for a
content send, the personalization's substitutions applied in one pass. Headers and
custom_args merge top level and personalization (personalization wins). Rendering happens
when a message is read.

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

Stalled answers end early and hang up when the server stops, so no test waits on them.
Faults and `on_request` apply to every request, mail or API, in the order they arrive.
`clear()` forgets recorded requests, messages and pending faults (templates stay).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property, lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from pybars import Compiler, PybarsError

# ERRORS: "limited to 1000 personalizations per API request"; "a limit of 1000 total
# recipients (to + cc + bcc) per request".
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
# LIMITS: "The total size of your email, including attachments, must be less than 30MB."
MAX_BYTES = 30_000_000
# MAIL: custom_args "may not exceed 10,000 bytes"; substitutions "may not exceed 10,000 bytes
# per personalization object". dynamic_template_data: the same cap, as SendGrid's client
# libraries document it (e.g. sendgrid-java's Personalization).
MAX_ARGS_BYTES = 10_000
MAX_DATA_BYTES = 10_000
# TEMPLATES: "Each user can create up to 300 different templates"; version and template
# names at most 100 characters, subjects 255, html_content and plain_content 1,048,576 bytes.
MAX_TEMPLATES = 300
# VERSIONS: "Each user can have up to 300 versions across all templates."
MAX_VERSIONS = 300
MAX_NAME = 100
MAX_SUBJECT = 255
MAX_CONTENT_BYTES = 1_048_576

# MAIL: the request body's documented fields, top level and per personalization.
MAIL_FIELDS = frozenset({
    "personalizations", "from", "reply_to", "reply_to_list", "subject", "content",
    "attachments", "template_id", "headers", "categories", "custom_args", "send_at",
    "batch_id", "asm", "ip_pool_name", "mail_settings", "tracking_settings",
})
PERSONALIZATION_FIELDS = frozenset({
    "to", "cc", "bcc", "from", "subject", "headers", "substitutions", "dynamic_template_data",
    "custom_args", "send_at",
})
# MAIL, `tracking_settings`: each setting an object of these fields (booleans and strings),
# e.g. {"click_tracking": {"enable": false, "enable_text": false}, "open_tracking":
# {"enable": false}}. A setting left out keeps the account's own choice.
TRACKING_SETTINGS: dict[str, dict[str, type]] = {
    "click_tracking": {"enable": bool, "enable_text": bool},
    "open_tracking": {"enable": bool, "substitution_tag": str},
    "subscription_tracking": {"enable": bool, "text": str, "html": str,
                              "substitution_tag": str},
    "ganalytics": {"enable": bool, "utm_source": str, "utm_medium": str, "utm_term": str,
                   "utm_content": str, "utm_campaign": str},
}
# MAIL, `headers`: "You may not override the following headers" (compared case-insensitively).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "X-SG-ID", "X-SG-EID", "Received", "DKIM-Signature", "Content-Type",
        "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC",
    )
)
# HANDLEBARS: the helpers SendGrid's dynamic templates support. `with`, `lookup`, partials
# and the rest of Handlebars.js are not on the list.
BLOCK_HELPERS = frozenset({"if", "unless", "each", "equals", "notEquals", "greaterThan",
                           "lessThan", "and", "or"})
VALUE_HELPERS = frozenset({"length", "formatDate", "insert"})
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")

STATUS_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
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

    index: int  # 1 for the first request of its kind (mail or API) since start or clear()
    method: str
    path: str
    query: dict[str, list[str]]
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


@dataclass(frozen=True)
class Version:
    """A template version, as TEMPLATES describes it."""

    id: str
    template_id: str
    name: str
    subject: str
    html_content: str
    plain_content: str
    generate_plain_content: bool
    editor: str
    active: int
    updated_at: str

    def lean(self) -> dict[str, Any]:
        return {"id": self.id, "template_id": self.template_id, "active": self.active,
                "name": self.name, "subject": self.subject, "updated_at": self.updated_at,
                "generate_plain_content": self.generate_plain_content,
                "editor": self.editor}

    def output(self) -> dict[str, Any]:
        return {**self.lean(), "html_content": self.html_content,
                "plain_content": self.plain_content}


@dataclass
class Template:
    id: str
    name: str
    generation: str
    updated_at: str
    versions: list[Version] = field(default_factory=list)

    @property
    def active(self) -> Version | None:
        return next((v for v in self.versions if v.active == 1), None)

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "generation": self.generation,
                "updated_at": self.updated_at, "versions": [v.lean() for v in self.versions]}


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
    # A content send: the subject and parts before substitution, and the substitutions.
    raw_subject: str | None = None
    content: tuple[tuple[str, str], ...] = ()
    substitutions: dict[str, str] = field(default_factory=dict)
    # A template send: the version that was active, and this personalization's data.
    template: Version | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # The request's tracking_settings (one per request, MAIL): {} when it set none.
    tracking_settings: dict[str, Any] = field(default_factory=dict)

    def tracked(self, setting: str) -> bool | None:
        """Whether the request turned `click_tracking` or `open_tracking` on (True) or
        off (False); None when it left the account's choice."""
        value = self.tracking_settings.get(setting, {}).get("enable")
        return value if isinstance(value, bool) else None

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc

    @cached_property
    def subject(self) -> str:
        if self.template is not None:
            return render(self.template.subject, self.data)
        return substitute(self.raw_subject or "", self.substitutions)

    @cached_property
    def text(self) -> str | None:
        if self.template is not None:
            return render(self.template.plain_content, self.data) or None
        return self._part("text/plain")

    @cached_property
    def html(self) -> str | None:
        if self.template is not None:
            return render(self.template.html_content, self.data) or None
        return self._part("text/html")

    def _part(self, kind: str) -> str | None:
        for ctype, value in self.content:
            if ctype == kind:
                return substitute(value, self.substitutions)
        return None


def substitute(template: str, substitutions: Mapping[str, str]) -> str:
    """Replace every tag in one pass, longest tag first; filled values are not rescanned."""
    if not substitutions:
        return template
    pattern = "|".join(re.escape(tag) for tag in sorted(substitutions, key=len, reverse=True))
    return re.sub(pattern, lambda m: substitutions[m.group(0)], template)


# -- Handlebars, as SendGrid documents it (HANDLEBARS) ------------------------------------


def _truthy(value: Any) -> bool:
    # "empty strings, zero integers, and zero floating point numbers evaluate to false"
    return bool(value)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _same(a: Any, b: Any) -> bool:
    # equals "will also attempt to coerce data types": {{#equals 3 "3"}} is true.
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x == y
    return str(a) == str(b)


def _block(test: Callable[..., bool]) -> Callable[..., Any]:
    def helper(this: Any, options: dict[str, Any], *args: Any) -> Any:
        return options["fn"](this) if test(*args) else options["inverse"](this)
    return helper


def _compare(op: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def test(a: Any, b: Any) -> bool:
        x, y = _number(a), _number(b)
        return x is not None and y is not None and op(x, y)
    return test


def _length(_this: Any, value: Any) -> int:
    # "the number of characters in a given string or array ... non-string and non-array
    # values, length will return 0"
    return len(value) if isinstance(value, str | list | tuple) else 0


def _insert(_this: Any, value: Any, default: str = "") -> Any:
    if value not in (None, ""):
        return value
    return default.removeprefix("default=")


_DATE_TOKENS = re.compile(r"YYYY|YY|MMMM|MMM|MM|M|DD|D|dddd|ddd|hh|h|HH|H|mm|m|ss|s|A|ZZ|Z")


def _format_date(_this: Any, when: Any, pattern: str, offset: str | None = None) -> str:
    """formatDate: an epoch or ISO 8601 time in the documented tokens, at an optional
    "-0800" offset."""
    if isinstance(when, int | float):
        moment = datetime.fromtimestamp(when, UTC)
    else:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    zone = UTC
    if offset:
        sign = -1 if offset.startswith("-") else 1
        digits = offset.lstrip("+-").replace(":", "")
        zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
    moment = moment.astimezone(zone)
    hour12 = moment.hour % 12 or 12
    z = moment.strftime("%z")
    tokens = {
        "YYYY": f"{moment.year:04d}", "YY": f"{moment.year % 100:02d}",
        "MMMM": moment.strftime("%B"), "MMM": moment.strftime("%b"),
        "MM": f"{moment.month:02d}", "M": str(moment.month),
        "DD": f"{moment.day:02d}", "D": str(moment.day),
        "dddd": moment.strftime("%A"), "ddd": moment.strftime("%a"),
        "hh": f"{hour12:02d}", "h": str(hour12), "HH": f"{moment.hour:02d}",
        "H": str(moment.hour), "mm": f"{moment.minute:02d}", "m": str(moment.minute),
        "ss": f"{moment.second:02d}", "s": str(moment.second),
        "A": "AM" if moment.hour < 12 else "PM", "ZZ": z, "Z": f"{z[:3]}:{z[3:]}",
    }
    return _DATE_TOKENS.sub(lambda m: tokens[m.group(0)], pattern)


def _refuse(name: str) -> Callable[..., Any]:
    def helper(*_args: Any, **_kwargs: Any) -> Any:
        raise PybarsError(f"the {name} helper is not supported by SendGrid")
    return helper


def _unless(this: Any, options: dict[str, Any], value: Any) -> Any:
    # Handlebars' unless takes an {{else}}; pybars3's built-in drops it.
    return options["inverse"](this) if _truthy(value) else options["fn"](this)


HELPERS: dict[str, Callable[..., Any]] = {
    "unless": _unless,
    "equals": _block(_same),
    "notEquals": _block(lambda a, b: not _same(a, b)),
    "greaterThan": _block(_compare(lambda a, b: a > b)),
    "lessThan": _block(_compare(lambda a, b: a < b)),
    "and": _block(lambda *values: all(_truthy(v) for v in values)),
    "or": _block(lambda *values: any(_truthy(v) for v in values)),
    "length": _length,
    "insert": _insert,
    "formatDate": _format_date,
    **{name: _refuse(name) for name in ("with", "lookup", "log")},
}

_TAG = re.compile(r"\{\{\{?(.*?)\}?\}\}", re.S)
_SUBEXPRESSION = re.compile(r"\(\s*([^\s()]+)")


def template_problems(source: str) -> list[str]:
    """Why SendGrid's Handlebars could not render `source`: parse errors, helpers it does
    not have, partials."""
    problems = []
    open_blocks: list[str] = []
    for match in _TAG.finditer(source):
        body = match.group(1).strip().strip("~").strip()
        if body.startswith("/"):
            closing = body[1:].strip()
            if not open_blocks or open_blocks.pop() != closing:
                problems.append(f"{{{{/{closing}}}}} closes no open block")
            continue
        if not body or body[0] == "!":
            continue
        if body[0] in "#^" and body[1:].split():
            open_blocks.append(body[1:].split()[0])
        if body[0] == ">":
            problems.append(f"partials are not supported: {{{{{body}}}}}")
            continue
        names = [m for m in _SUBEXPRESSION.findall(body) if m not in VALUE_HELPERS]
        problems += [f"unknown helper {n!r}" for n in names]
        words = body.split()
        if body[0] in "#^":
            name = body[1:].split()[0] if body[1:].split() else ""
            if name not in BLOCK_HELPERS:
                problems.append(f"unknown block helper {name!r}")
        elif words[0] == "else":
            if len(words) > 1 and words[1] not in BLOCK_HELPERS:
                problems.append(f"unknown helper {words[1]!r} after else")
        elif len(words) > 1 and words[0] not in VALUE_HELPERS:
            problems.append(f"unknown helper {words[0]!r}")
    problems += [f"{{{{#{name}}}}} is never closed" for name in open_blocks]
    try:
        _compiled(source)
    except PybarsError as exc:
        problems.append(f"not valid Handlebars: {exc}")
    return problems


@lru_cache(maxsize=64)
def _compiled(source: str) -> Callable[..., str]:
    return Compiler().compile(source)


def render(source: str, data: Mapping[str, Any]) -> str:
    """A template as SendGrid renders it: {{x}} HTML-escaped, {{{x}}} as is."""
    return _compiled(source)(dict(data), helpers=HELPERS)


# -- Mail Send validation --------------------------------------------------------------------


def _error(message: str, field_name: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _size(mapping: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _json_bytes(value: Any) -> int:
    # Compact UTF-8, as json.dumps(ensure_ascii=False, separators=(",", ":")) gives, and
    # about ten times faster: the delivery benchmark measures 100,000 of these per run.
    return len(orjson.dumps(value))


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


def _unknown_fields(payload: dict[str, Any], known: frozenset[str], where: str,
                    errors: list[dict[str, Any]]) -> None:
    for name in payload:
        path = f"{where}.{name}" if where else name
        if name == "sections":
            errors.append(_error(
                "Section tags were retired on 13 August 2020; the sections field is no "
                "longer supported. Use a dynamic template with dynamic_template_data.", path))
        elif name not in known:
            errors.append(_error(f"The {name} field is not part of the v3 Mail Send "
                                 "request body.", path))


def validate(payload: object, templates: Mapping[str, Template] | None = None
             ) -> list[dict[str, Any]]:
    """SendGrid's checks on a mail/send body: the errors it would answer 400 with."""
    if not isinstance(payload, dict):
        return [_error("Bad Request: the body must be a JSON object.")]
    templates = templates or {}
    errors: list[dict[str, Any]] = []
    _unknown_fields(payload, MAIL_FIELDS, "", errors)
    template_id = payload.get("template_id")
    template: Template | None = None
    if template_id is not None:
        template = templates.get(template_id) if isinstance(template_id, str) else None
        if template is None:
            errors.append(_error("The template_id is not a template of this account.",
                                 "template_id"))
        elif template.active is None:
            errors.append(_error("The template has no active version.", "template_id"))
    dynamic = isinstance(template_id, str) and template_id.startswith("d-")
    pers = payload.get("personalizations")
    if not isinstance(pers, list) or not pers:
        errors.append(_error("The personalizations field is required and must have at "
                             "least one personalization.", "personalizations"))
        pers = []
    elif len(pers) > MAX_PERSONALIZATIONS:
        errors.append(_error(f"The personalization block is limited to {MAX_PERSONALIZATIONS} "
                             f"personalizations per API request. You have provided "
                             f"{len(pers)} personalizations.", "personalizations"))
    seen: set[str] = set()
    total = 0
    duplicate_reported = False
    for i, p in enumerate(pers):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            errors.append(_error("Invalid type. Expected: object.", where))
            continue
        _unknown_fields(p, PERSONALIZATION_FIELDS, where, errors)
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
        if "custom_args" in p:
            _check_args(p["custom_args"], f"{where}.custom_args", errors)
        if "substitutions" in p:
            if dynamic:
                errors.append(_error("Substitutions may not be used with dynamic templating",
                                     f"{where}.substitutions"))
            else:
                _check_args(p["substitutions"], f"{where}.substitutions", errors)
        if "dynamic_template_data" in p:
            data = p["dynamic_template_data"]
            if not dynamic:
                errors.append(_error("dynamic_template_data is for dynamic templates: give a "
                                     "template_id starting with d-.",
                                     f"{where}.dynamic_template_data"))
            elif not isinstance(data, dict):
                errors.append(_error("Invalid type. Expected: object.",
                                     f"{where}.dynamic_template_data"))
            elif _json_bytes(data) > MAX_DATA_BYTES:
                errors.append(_error(f"The dynamic_template_data may not exceed "
                                     f"{MAX_DATA_BYTES} bytes per personalization.",
                                     f"{where}.dynamic_template_data"))
    if total > MAX_RECIPIENTS:
        errors.append(_error("There is a limit of 1000 total recipients (to + cc + bcc) per "
                             "request. The total number of recipients must be no more than "
                             "1000.", "personalizations"))
    sender = payload.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(_error("The from object must be provided for every email send. It is "
                             "an object that requires the email parameter, but may also "
                             "contain a name parameter.", "from"))
    elif not isinstance(sender["email"], str) or not _EMAIL.fullmatch(sender["email"]):
        errors.append(_error("The from email does not contain a valid address.", "from.email"))
    if "reply_to" in payload and "reply_to_list" in payload:
        errors.append(_error("You can use either reply_to or reply_to_list, but not both.",
                             "reply_to_list"))
    subject = payload.get("subject")
    every_own = bool(pers) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"]
        for p in pers
    )
    from_template = template is not None and template.active is not None and bool(
        template.active.subject)
    if not (isinstance(subject, str) and subject) and not every_own and not from_template:
        errors.append(_error("The subject is required. You can get around this requirement "
                             "if you use a template with a subject defined or if every "
                             "personalization has a subject defined.", "subject"))
    if template is None or "content" in payload:
        _check_content(payload.get("content"), errors)
    if "headers" in payload:
        _check_headers(payload["headers"], "headers", errors)
    if "custom_args" in payload:
        _check_args(payload["custom_args"], "custom_args", errors)
    if "tracking_settings" in payload:
        _check_tracking(payload["tracking_settings"], errors)
    return errors


def _check_tracking(value: object, errors: list[dict[str, Any]]) -> None:
    """MAIL, `tracking_settings`: known settings, each an object of known, typed fields."""
    if not isinstance(value, dict):
        errors.append(_error("Invalid type. Expected: object.", "tracking_settings"))
        return
    for name, setting in value.items():
        where = f"tracking_settings.{name}"
        fields = TRACKING_SETTINGS.get(name)
        if fields is None:
            errors.append(_error(f"The {name} field is not part of tracking_settings.", where))
            continue
        if not isinstance(setting, dict):
            errors.append(_error("Invalid type. Expected: object.", where))
            continue
        for key, item in setting.items():
            expected = fields.get(key)
            if expected is None:
                errors.append(_error(f"The {key} field is not part of {name}.",
                                     f"{where}.{key}"))
            elif not isinstance(item, expected):
                errors.append(_error(f"Invalid type. Expected: {expected.__name__}.",
                                     f"{where}.{key}"))


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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


_Answer = tuple[int, dict[str, str], dict[str, Any] | None]


class SendGridServer:
    """SendGrid's Mail Send and Templates endpoints on a free loopback port, in a thread."""

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
        self.api_requests: list[Received] = []
        self.messages: list[Delivered] = []
        self.templates: dict[str, Template] = {}
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
            self.api_requests.clear()
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

    def _process(self, received: Received, body: bytes) -> _Answer:
        """SendGrid's answer to a request that got through: (status, headers, JSON body)."""
        auth = received.headers.get("authorization", "")
        if not auth:
            return 401, {}, {"errors": [_error("authorization required")]}
        if auth != f"Bearer {self.api_key}":
            return 401, {}, {"errors": [_error(STATUS_MESSAGES[401])]}
        mail = received.path.rstrip("/") == "/v3/mail/send"
        if mail and received.size >= self.max_bytes:  # "must be less than 30MB" (LIMITS)
            return 413, {}, {"errors": [_error(
                f"{STATUS_MESSAGES[413]}: {received.size} bytes, the limit is "
                f"{self.max_bytes}.")]}
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return 400, {}, {"errors": [_error("Bad Request: the body is not valid JSON.")]}
        if self.record:
            received.payload = payload
        parts = [p for p in received.path.strip("/").split("/") if p]
        if parts[:3] == ["v3", "mail", "send"] and len(parts) == 3:
            if received.method != "POST":
                return 405, {}, {"errors": [_error(STATUS_MESSAGES[405])]}
            return self._mail_send(received, payload)
        if parts[:2] == ["v3", "templates"]:
            with self._lock:
                return self._templates_api(received, parts[2:], payload)
        return 404, {}, {"errors": [_error(STATUS_MESSAGES[404])]}

    def _mail_send(self, received: Received, payload: Any) -> _Answer:
        with self._lock:
            templates = dict(self.templates)
        errors = validate(payload, templates)
        template = (templates[payload["template_id"]].active
                    if not errors and "template_id" in payload else None)
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
            delivered = _expand(received.index, message_id, payload, template)
            with self._lock:
                self.messages.extend(delivered)
        return 202, {"X-Message-Id": message_id}, None

    def _templates_api(self, received: Received, rest: list[str], payload: Any) -> _Answer:
        """TEMPLATES: the calls `newsletter sendgrid sync` makes. Holds the lock."""
        method = received.method
        if not rest:
            if method == "POST":
                return self._create_template(payload)
            if method == "GET":
                return self._list_templates(received.query)
            return 405, {}, {"errors": [_error(STATUS_MESSAGES[405])]}
        template = self.templates.get(rest[0])
        if template is None:
            return 404, {}, {"errors": [_error("template not found")]}
        if len(rest) == 1 and method == "GET":
            return 200, {}, template.json()
        if len(rest) == 2 and rest[1] == "versions" and method == "POST":
            return self._create_version(template, payload)
        if len(rest) == 4 and rest[1] == "versions" and rest[3] == "activate" and (
                method == "POST"):
            version = next((v for v in template.versions if v.id == rest[2]), None)
            if version is None:
                return 404, {}, {"errors": [_error("version not found")]}
            return 200, {}, self._activate(template, version.id).output()
        if len(rest) == 3 and rest[1] == "versions" and method == "DELETE":
            version = next((v for v in template.versions if v.id == rest[2]), None)
            if version is None:
                return 404, {}, {"errors": [_error("version not found")]}
            if version.active == 1:
                # Not documented either way; refusing keeps a test from deleting what
                # every send of the template renders with.
                return 400, {}, {"errors": [_error("The active version cannot be deleted.")]}
            template.versions = [v for v in template.versions if v.id != version.id]
            return 204, {}, None
        return 404, {}, {"errors": [_error(STATUS_MESSAGES[404])]}

    def _create_template(self, payload: Any) -> _Answer:
        if not isinstance(payload, dict):
            return 400, {}, {"errors": [_error("Bad Request: the body must be a JSON object.")]}
        name, generation = payload.get("name"), payload.get("generation", "legacy")
        errors = []
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            errors.append(_error(f"name is required, at most {MAX_NAME} characters.", "name"))
        if generation not in ("legacy", "dynamic"):
            errors.append(_error("generation must be legacy or dynamic.", "generation"))
        if len(self.templates) >= MAX_TEMPLATES:
            errors.append(_error(f"You may not create more than {MAX_TEMPLATES} templates."))
        if errors:
            return 400, {}, {"errors": errors}
        # Dynamic template ids start with d- (MAIL, template_id).
        template_id = (f"d-{uuid.uuid4().hex}" if generation == "dynamic"
                       else str(uuid.uuid4()))
        template = Template(template_id, name, generation, _now())
        self.templates[template_id] = template
        return 201, {}, template.json()

    def _list_templates(self, query: Mapping[str, list[str]]) -> _Answer:
        try:
            page_size = int(query.get("page_size", [""])[0])
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 200:
            return 400, {}, {"errors": [_error("page_size must be between 1 and 200.",
                                               "page_size")]}
        wanted = set(query.get("generations", ["legacy"])[0].split(","))
        found = [t for t in self.templates.values() if t.generation in wanted]
        start = int(query.get("page_token", ["0"])[0] or 0)
        page = found[start:start + page_size]
        metadata: dict[str, Any] = {"self": f"{self.url}/v3/templates", "count": len(found)}
        if start + page_size < len(found):
            metadata["next"] = (f"{self.url}/v3/templates?page_size={page_size}"
                                f"&page_token={start + page_size}")
        return 200, {}, {"result": [t.json() for t in page], "_metadata": metadata}

    def _create_version(self, template: Template, payload: Any) -> _Answer:
        if not isinstance(payload, dict):
            return 400, {}, {"errors": [_error("Bad Request: the body must be a JSON object.")]}
        errors = []
        name, subject = payload.get("name"), payload.get("subject")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            errors.append(_error(f"name is required, at most {MAX_NAME} characters.", "name"))
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
            errors.append(_error(f"subject is required, at most {MAX_SUBJECT} characters.",
                                 "subject"))
        html = payload.get("html_content") or ""
        plain = payload.get("plain_content") or ""
        for key, value in (("html_content", html), ("plain_content", plain)):
            if not isinstance(value, str) or len(value.encode()) > MAX_CONTENT_BYTES:
                errors.append(_error(f"{key} must be a string of at most {MAX_CONTENT_BYTES} "
                                     "bytes.", key))
        if sum(len(t.versions) for t in self.templates.values()) >= MAX_VERSIONS:
            errors.append(_error(f"You may not have more than {MAX_VERSIONS} versions across "
                                 "all templates."))
        generate = payload.get("generate_plain_content", True)
        if generate and isinstance(html, str):
            plain = re.sub(r"<[^>]+>", "", html)
        if template.generation == "dynamic" and not errors:
            for key, value in (("subject", subject), ("html_content", html),
                               ("plain_content", plain)):
                errors += [_error(p, key) for p in template_problems(value)]
        if errors:
            return 400, {}, {"errors": errors}
        version = Version(
            id=str(uuid.uuid4()), template_id=template.id, name=name, subject=subject,
            html_content=html, plain_content=plain, generate_plain_content=bool(generate),
            editor=payload.get("editor", "code"), active=0, updated_at=_now())
        template.versions.append(version)
        # "The first version created for a template will automatically be set to Active."
        if payload.get("active") == 1 or len(template.versions) == 1:
            version = self._activate(template, version.id)
        return 201, {}, version.output()

    @staticmethod
    def _activate(template: Template, version_id: str) -> Version:
        # "Only one version of a template can be active."
        template.versions = [
            Version(**{**v.__dict__, "active": int(v.id == version_id)})
            for v in template.versions]
        template.updated_at = _now()
        return next(v for v in template.versions if v.id == version_id)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                # Read (or drain) the whole body even when refusing it: closing with unread
                # data makes the kernel reset the connection, which the client would take
                # for a network fault (and retry) instead of reading the 413.
                url = urlsplit(self.path)
                mail = url.path.rstrip("/") == "/v3/mail/send"
                body = b""
                if mail and size >= server.max_bytes:
                    remaining = size
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                else:
                    body = self.rfile.read(size) if size else b""
                with server._lock:
                    log = server.requests if mail else server.api_requests
                    received = Received(
                        index=len(log) + 1,
                        method=self.command,
                        path=url.path,
                        query=parse_qs(url.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        size=size,
                    )
                    log.append(received)
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


def _expand(index: int, message_id: str, payload: dict[str, Any],
            template: Version | None) -> list[Delivered]:
    content = tuple((c["type"], c["value"]) for c in payload.get("content") or ())
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
            raw_subject=p.get("subject") or payload.get("subject"),
            content=content,
            substitutions=p.get("substitutions", {}),
            template=template,
            data=p.get("dynamic_template_data", {}),
            tracking_settings=payload.get("tracking_settings", {}),
        ))
    return out
