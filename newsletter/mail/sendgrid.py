"""The SendGrid sender: digests as a dynamic template, up to 1,000 readers per request.

The digest is one Handlebars template (`render.digest_template`), kept on SendGrid as a
dynamic template with versions (Templates API). `sync` uploads it when its content hash is
new and activates it; `prepare`, run before anyone is claimed, checks that the active
version is this release's and syncs it (or, with SENDGRID_TEMPLATE_SYNC off, stops the send
with what to do). Each reader is then one personalization of a v3 `mail/send` request:
`dynamic_template_data` (their digest), their own headers (List-Unsubscribe) and
`custom_args` (the delivery id, echoed back by the event webhook). SendGrid renders
every digest server-side, so 1,000 different digests cost one request.

Every rule below is SendGrid's, from its documentation:
- at most 1,000 personalizations and 1,000 recipients (to + cc + bcc) per request
  (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors);
- the request, as sent, under 30 MB
  (https://www.twilio.com/docs/sendgrid/api-reference/mail-send#limitations), so requests
  are cut by bytes as well as by count;
- `template_id` with `dynamic_template_data`, never `substitutions` (meant for templates
  that are not dynamic) and no `content` or `subject`: the template's win
  (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send, `template_id`);
- at most 10,000 bytes of `dynamic_template_data` per personalization (`message.DATA_LIMIT`).
  A reader whose digest does not fit is sent the documented way without a template: a
  request of their own, with the digest rendered here as `content`.
Single messages (confirmation, welcome) go the same way, as plain content.

Tracking (SENDGRID_CLICK_TRACKING, SENDGRID_OPEN_TRACKING; both off unless the operator
turns them on) is set on every request, as `tracking_settings.click_tracking.enable` and
`tracking_settings.open_tracking.enable`
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send), so the account's
own defaults never decide it. `tracking_settings` belongs to a request, not to a
personalization: readers who opted out of tracking share requests of their own, with
tracking off (a thousand readers still take two requests, not one each). Click tracking
is never asked for the text part (`enable_text: false`: its links would turn into long
redirect addresses a reader copies by hand), and confirmation and welcome mails go
untracked. The digest template marks its personal links (manage, unsubscribe, view in
browser, rating, and "Read more", which carries the reader's rating token)
`clicktracking="off"`, the documented way to leave one link untracked
(https://www.twilio.com/docs/sendgrid/ui/analytics-and-reporting/click-tracking-html-best-practices):
a reader's tokens stay out of the provider's click log.

What a request's answer means for its recipients, in `BatchResult` terms:
- 2xx: `accepted`.
- 429: wait until `X-RateLimit-Reset` (capped at `max_wait`), then try again.
- 5xx, 408, timeouts, connection resets: back off exponentially and try again, at most
  `max_attempts` requests in all; when they run out the recipients are in neither list.
- any other 4xx (400, 413, ...): never retried, the same request would be refused again;
  the recipients are `rejected` and `error` holds SendGrid's own message.
- 401 or 403 (the key or the sender identity is wrong, not the recipients): never retried,
  and neither that request nor the rest of the batch is attempted.
Recipients in neither list were not sent and may be sent again later. The batch's
`RequestLog` (a delivery's send journal) is told of each request before it goes and once
it is answered.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sendgrid
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError

from newsletter.config import Settings
from newsletter.mail.batch import UNLOGGED, Batch, BatchResult, Recipient, RequestLog
from newsletter.mail.message import DATA_LIMIT
from newsletter.mail.render import DigestTemplate, digest_template, render_digest
from newsletter.mail.senders import MailError, Message

log = logging.getLogger(__name__)

SENDGRID_HOST = "https://api.sendgrid.com"
# https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors (personalizations)
MAX_PERSONALIZATIONS = 1000
# https://www.twilio.com/docs/sendgrid/api-reference/mail-send#limitations: "less than 30MB".
# Counted in decimal megabytes, the smaller reading.
MAX_REQUEST_BYTES = 30_000_000
# A template version's html_content and plain_content, each (Templates API, versions).
# https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions/create-a-new-transactional-template-version
MAX_TEMPLATE_BYTES = 1_048_576
TEMPLATE_NAME = "paperwire-digest"

# Statuses worth another try: SendGrid (or a proxy in front of it) was busy or broken.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
# Refusals that concern the account, not this request: every later request would get the same.
_ACCOUNT = frozenset({401, 403})
# What json.dumps writes before a personalization's data, its last key.
_DATA_KEY = ', "dynamic_template_data": '

# Template ids this process has checked, by (host, key, name, version): one check per worker
# process, not one per chunk of an edition.
_checked: dict[tuple[str, str, str, str], str] = {}


class TemplateError(MailError):
    """The digest template is missing or outdated on SendGrid, or could not be synced."""


@dataclass(frozen=True)
class _Outcome:
    """What one request (with its retries) came to."""

    requests: int
    ok: bool
    status: int | None = None  # the last HTTP status; None when no answer came
    error: str | None = None
    body: Any = None  # the answer's JSON, when it had one
    message_id: str | None = None  # X-Message-Id of an accepted mail/send

    @property
    def permanent(self) -> bool:
        return not self.ok and self.status is not None and self.status not in _TRANSIENT


@dataclass(frozen=True)
class TemplateState:
    """What SendGrid holds of the digest template, next to what this release needs."""

    name: str
    wanted: str  # the version name this release needs: "<name>-<content hash>"
    template_id: str | None = None
    active: str | None = None  # the active version's name
    versions: tuple[Mapping[str, Any], ...] = ()

    @property
    def current(self) -> bool:
        return self.template_id is not None and self.active == self.wanted

    def problem(self) -> str:
        if self.template_id is None:
            return f"SendGrid has no dynamic template named {self.name!r}"
        if self.active is None:
            return f"SendGrid template {self.name!r} has no active version"
        return (f"SendGrid template {self.name!r} is outdated: its active version is "
                f"{self.active!r}, this release needs {self.wanted!r}")


@dataclass(frozen=True)
class SyncResult:
    template_id: str
    version: str
    created: bool  # the template itself was new
    uploaded: bool  # a new version was uploaded
    activated: bool  # a version was made active

    def line(self) -> str:
        if not (self.uploaded or self.activated):
            return f"template {self.template_id}: version {self.version} is active, nothing to do"
        done = "uploaded and activated" if self.uploaded else "activated"
        return f"template {self.template_id}: version {self.version} {done}"


class SendGridSender:
    """Sends digests and single messages through SendGrid's v3 API (official client)."""

    max_batch = MAX_PERSONALIZATIONS

    def __init__(
        self,
        api_key: str,
        mail_from: str,
        *,
        host: str = SENDGRID_HOST,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        template_name: str = TEMPLATE_NAME,
        sync_template: bool = True,
        click_tracking: bool = False,
        open_tracking: bool = False,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.host = host.rstrip("/")
        self.api_key = api_key
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # python_http_client waits forever by default; a hung connection would stall a worker
        # (and hold its claimed deliveries) indefinitely. Every sub-client it builds for a
        # URL path (client.mail.send) copies this value into urlopen(timeout=...).
        self.client.client.timeout = timeout
        name, address = parseaddr(mail_from)
        if "@" not in address:
            raise ValueError(f"MAIL_FROM {mail_from!r} has no email address")
        self.sender: dict[str, str] = {"email": address, **({"name": name} if name else {})}
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.template_name = template_name
        self.sync_template = sync_template
        self.click_tracking = click_tracking
        self.open_tracking = open_tracking
        self.max_request_bytes = max_request_bytes
        # Injected so tests can record the waits instead of spending them.
        self.sleep = sleep
        # Wall clock (epoch seconds): X-RateLimit-Reset is an absolute Unix time.
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SendGridSender:
        if not settings.sendgrid_api_key:
            raise ValueError("MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY")
        options: dict[str, Any] = {
            "host": settings.sendgrid_host,
            "timeout": settings.sendgrid_timeout,
            "max_attempts": settings.sendgrid_max_attempts,
            "max_wait": settings.sendgrid_max_wait,
            "template_name": settings.sendgrid_template_name,
            "sync_template": settings.sendgrid_template_sync,
            "click_tracking": settings.sendgrid_click_tracking,
            "open_tracking": settings.sendgrid_open_tracking,
        }
        options.update(overrides)
        return cls(settings.sendgrid_api_key, settings.mail_from, **options)

    # -- the digest template ---------------------------------------------------------------

    def prepare(self) -> None:
        """Check (or sync) the digest template; TemplateError says what is wrong."""
        self.template_id()

    def template_id(self) -> str:
        """The id of the dynamic template whose active version is this release's digest."""
        template = digest_template()
        key = (self.host, self.api_key, self.template_name, template.version)
        known = _checked.get(key)
        if known:
            return known
        state = self.template_state(template)
        if state.current:
            assert state.template_id is not None
            found = state.template_id
        elif self.sync_template:
            found = self.sync(template, state).template_id
        else:
            raise TemplateError(f"{state.problem()}. Run `newsletter sendgrid sync` "
                                "(or set SENDGRID_TEMPLATE_SYNC=true); nobody was sent "
                                "anything.")
        _checked[key] = found
        return found

    def template_state(self, template: DigestTemplate | None = None) -> TemplateState:
        template = template or digest_template()
        wanted = f"{self.template_name}-{template.version}"
        found = self._find_template()
        if found is None:
            return TemplateState(self.template_name, wanted)
        detail = self._call("read template", lambda: self._templates()._(found).get())
        versions = tuple(detail.get("versions") or ())
        active = next((v.get("name") for v in versions if v.get("active") == 1), None)
        return TemplateState(self.template_name, wanted, found, active, versions)

    def sync(self, template: DigestTemplate | None = None,
             state: TemplateState | None = None) -> SyncResult:
        """Make this release's digest the template's active version, uploading it only if
        no version has its content hash yet. Safe to run again: it then does nothing."""
        template = template or digest_template()
        for part, value in (("HTML", template.html), ("text", template.text)):
            if len(value.encode()) > MAX_TEMPLATE_BYTES:
                raise TemplateError(f"the digest's {part} is over SendGrid's "
                                    f"{MAX_TEMPLATE_BYTES} bytes per template version")
        state = state or self.template_state(template)
        created = state.template_id is None
        template_id = state.template_id or self._call(
            "create template", lambda: self._templates().post(
                request_body={"name": self.template_name, "generation": "dynamic"}))["id"]
        same = next((v for v in state.versions if v.get("name") == state.wanted), None)
        uploaded = activated = False
        if same is None:
            version = self._call("upload template version", lambda: self._templates()
                                 ._(template_id).versions.post(request_body={
                                     "name": state.wanted,
                                     "subject": template.subject,
                                     "html_content": template.html,
                                     "plain_content": template.text,
                                     # Ours is written by hand; SendGrid's would replace it.
                                     "generate_plain_content": False,
                                     "editor": "code",
                                     "active": 1,
                                 }))
            uploaded = True
            same, activated = version, version.get("active") == 1
        if same.get("active") != 1:
            version_id = same["id"]
            self._call("activate template version", lambda: self._templates()
                       ._(template_id).versions._(version_id).activate.post())
            activated = True
        log.info("sendgrid template %s (%s): version %s, uploaded=%s activated=%s",
                 self.template_name, template_id, state.wanted, uploaded, activated)
        _checked[(self.host, self.api_key, self.template_name, template.version)] = template_id
        return SyncResult(template_id, state.wanted, created, uploaded, activated)

    def _templates(self) -> Any:
        return self.client.client.templates

    def _find_template(self) -> str | None:
        """The id of the dynamic template named `template_name`, if the account has one."""
        query: dict[str, Any] = {"generations": "dynamic", "page_size": 200}
        while True:
            page = self._call("list templates",
                              lambda q=dict(query): self._templates().get(query_params=q))
            for item in page.get("result") or ():
                if item.get("name") == self.template_name:
                    return str(item["id"])
            following = (page.get("_metadata") or {}).get("next")
            token = parse_qs(urlsplit(following).query).get("page_token") if following else None
            if not token:
                return None
            query["page_token"] = token[0]

    def _call(self, what: str, request: Callable[[], Any]) -> dict[str, Any]:
        outcome = self._send(request)
        if not outcome.ok:
            raise TemplateError(f"could not {what}: {outcome.error}")
        return outcome.body if isinstance(outcome.body, dict) else {}

    # -- mail ------------------------------------------------------------------------------

    def send(self, message: Message) -> str:
        """One message as plain content (confirmation, welcome): MailError if not taken."""
        body = self._content_body(message.to, message.subject, message.text, message.html,
                                  message.headers, {}, tracked=False)
        outcome = self._post(json.dumps(body))
        if not outcome.ok:
            raise MailError(outcome.error or "the mail provider did not take the message")
        return message.to

    def send_batch(self, batch: Batch, log: RequestLog = UNLOGGED) -> BatchResult:
        accepted: list[str] = []
        rejected: list[str] = []
        requests = 0
        error: str | None = None
        try:
            template_id = self.template_id()
        except TemplateError as exc:
            # Not the readers' fault: they stay unsent, for a run after the operator syncs.
            return BatchResult((), (), 0, str(exc))
        for body, chunk in self.requests_for(batch, template_id):
            addresses = [r.to for r in chunk]
            log.sending(addresses)
            outcome = self._post(body)
            requests += outcome.requests
            if outcome.ok:
                accepted.extend(addresses)
                log.answered(addresses, (), None, outcome.message_id)
                continue
            error = outcome.error
            if outcome.permanent and outcome.status not in _ACCOUNT:
                # A 400 or 413 is about this request's content; the next one may be fine.
                rejected.extend(addresses)
                log.answered((), addresses, error, None)
                continue
            # Retries ran out (SendGrid is down) or the account is refused (a wrong key, an
            # unverified sender: the operator's fault, not the readers'): leave this request
            # and the rest unsent, for a run after the operator fixes it.
            log.answered((), (), error, None)
            break
        return BatchResult(tuple(accepted), tuple(rejected), requests, error)

    def tracking_settings(self, tracked: bool) -> dict[str, Any]:
        """A request's `tracking_settings`: the operator's choice for readers who allow
        tracking (`tracked`), off for everyone else."""
        return {"click_tracking": {"enable": tracked and self.click_tracking,
                                   "enable_text": False},
                "open_tracking": {"enable": tracked and self.open_tracking}}

    def requests_for(self, batch: Batch, template_id: str
                     ) -> Iterator[tuple[str, list[Recipient]]]:
        """The v3 mail/send bodies for a batch, as JSON, each with the readers it carries.

        Readers share a request up to the personalization count and the byte size SendGrid
        allows; a reader whose data is over its cap gets a request of their own. When the
        operator tracks opens or clicks, readers who opted out share requests of their own.
        A request is its readers' JSON joined, each reader's data as the composer
        serialised it (`Recipient.data_json`): nothing serialises a digest a second time.
        """
        tracks = self.click_tracking or self.open_tracking
        allowing = [r for r in batch.recipients if r.tracking or not tracks]
        declining = [r for r in batch.recipients if not (r.tracking or not tracks)]
        for readers, tracked in ((allowing, True), (declining, False)):
            if readers:
                yield from self._template_requests(readers, batch.headers, template_id,
                                                   tracked)

    def _template_requests(self, recipients: list[Recipient], headers: Mapping[str, str],
                           template_id: str, tracked: bool
                           ) -> Iterator[tuple[str, list[Recipient]]]:
        shared = _strings(headers)
        start: dict[str, Any] = {"from": self.sender, "template_id": template_id,
                                 "tracking_settings": self.tracking_settings(tracked)}
        if shared:
            start["headers"] = shared
        empty = json.dumps({**start, "personalizations": []})
        opening, closing = empty[:-2], empty[-2:]  # '{..., "personalizations": [', ']}'
        group: list[str] = []
        readers: list[Recipient] = []
        size = len(empty)
        for recipient in recipients:
            data_json = recipient.data_json or json.dumps(recipient.data)
            data_bytes = recipient.data_bytes or len(data_json)
            if data_bytes > DATA_LIMIT:
                digest = render_digest(recipient.data)
                yield (json.dumps(self._content_body(
                    recipient.to, digest.subject, digest.text, digest.html,
                    {**headers, **recipient.headers}, recipient.custom_args,
                    tracked=tracked)), [recipient])
                continue
            # What json.dumps would write for the envelope with the data as its last key.
            item = f'{json.dumps(_envelope(recipient))[:-1]}{_DATA_KEY}{data_json}}}'
            item_bytes = len(item) + len(", ")
            # "Less than 30MB": a request may not reach the limit, only stay under it.
            if group and (len(group) >= self.max_batch
                          or size + item_bytes >= self.max_request_bytes):
                yield f"{opening}{', '.join(group)}{closing}", readers
                group, readers, size = [], [], len(empty)
            group.append(item)
            readers.append(recipient)
            size += item_bytes
        if group:
            yield f"{opening}{', '.join(group)}{closing}", readers

    def _content_body(self, to: str, subject: str, text: str, html: str,
                      headers: Mapping[str, str], custom_args: Mapping[str, str], *,
                      tracked: bool) -> dict[str, Any]:
        personalization: dict[str, Any] = {"to": [{"email": to}]}
        if headers:
            personalization["headers"] = _strings(headers)
        if custom_args:
            personalization["custom_args"] = _strings(custom_args)
        return {
            "personalizations": [personalization],
            "from": self.sender,
            "subject": subject,
            # SendGrid requires text/plain before text/html.
            "content": [{"type": "text/plain", "value": text},
                        {"type": "text/html", "value": html}],
            "tracking_settings": self.tracking_settings(tracked),
        }

    # -- requests --------------------------------------------------------------------------

    def _post(self, body: str) -> _Outcome:
        """POST mail/send with a body serialised already, through the client's own
        transport: its headers (the key), its timeout, its errors.

        Not its `post`: that serialises a body itself and formats it again for a debug log
        whether or not the log is on, more CPU than composing the thousand digests of a
        6 MB request (python_http_client 3.3, `Client.__getattr__`; `_make_request` is the
        part it keeps "separated so we can mock it").
        """
        endpoint = self.client.client.mail.send

        def request() -> Response:
            sent = urllib.request.Request(
                endpoint._build_url(None), data=body.encode(), method="POST",
                headers={**endpoint.request_headers, "Content-Type": "application/json"})
            return Response(endpoint._make_request(urllib.request.build_opener(), sent))

        return self._send(request)

    def _send(self, request: Callable[[], Any]) -> _Outcome:
        """Make one request, retrying what may succeed later; never raises for HTTP trouble."""
        status: int | None = None
        error = "not sent"
        for attempt in range(1, self.max_attempts + 1):
            wait: float
            try:
                response = request()
            except HTTPError as exc:
                status = exc.status_code
                error = f"SendGrid {status}: {_message(exc.body)}"
                if status not in _TRANSIENT:
                    return _Outcome(attempt, ok=False, status=status, error=error)
                wait = self._rate_limit_wait(exc) if status == 429 else self._backoff(attempt)
            except (OSError, http.client.HTTPException) as exc:
                # Timeouts (TimeoutError, or URLError wrapping one), resets, refused
                # connections, truncated answers: SendGrid may or may not have taken the
                # request; retrying is the documented trade (an in-flight request may repeat).
                status = None
                error = f"SendGrid unreachable: {type(exc).__name__}: {exc}"
                wait = self._backoff(attempt)
            else:
                headers = response.headers
                return _Outcome(attempt, ok=True, status=response.status_code,
                                body=_json(response.body),
                                message_id=headers.get("X-Message-Id") if headers else None)
            if attempt < self.max_attempts:
                log.warning("%s; retrying in %.1fs (attempt %d of %d)",
                            error, wait, attempt + 1, self.max_attempts)
                self.sleep(wait)
        return _Outcome(self.max_attempts, ok=False, status=status, error=error)

    def _backoff(self, attempt: int) -> float:
        # Exponential with jitter, so workers that failed together do not retry together.
        delay = min(self.max_wait, self.backoff * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    def _rate_limit_wait(self, exc: HTTPError) -> float:
        headers = exc.headers
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            wait = float(reset) - self.clock() if reset is not None else None
        except ValueError:
            wait = None
        if wait is None or wait <= 0:
            # No usable reset time (or it has passed, clocks differ): a short backoff.
            return self._backoff(1)
        return min(wait, self.max_wait)


def _envelope(recipient: Recipient) -> dict[str, Any]:
    item: dict[str, Any] = {"to": [{"email": recipient.to}]}
    if recipient.headers:
        item["headers"] = _strings(recipient.headers)
    if recipient.custom_args:
        # SendGrid refuses non-string custom_args values (an id passed as an int).
        item["custom_args"] = _strings(recipient.custom_args)
    return item


def _strings(mapping: Mapping[str, object]) -> dict[str, str]:
    return {str(key): str(value) for key, value in mapping.items()}


def _json(body: bytes | str | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _message(body: bytes | str | None) -> str:
    """SendGrid's explanation from an error body: {"errors": [{"message", "field"}]}."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body or ""
    try:
        errors = json.loads(text)["errors"]
        parts = []
        for err in errors:
            field = err.get("field")
            parts.append(f"{err['message']} ({field})" if field else str(err["message"]))
        if parts:
            return "; ".join(parts)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return text.strip()[:500] or "no error message"
