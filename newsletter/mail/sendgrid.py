"""The SendGrid sender: digests as a dynamic template, up to 1,000 readers per request.

The digest is one Handlebars template per interface language (`render.digest_template`),
each kept on SendGrid as a dynamic template of its own (`sendgrid_templates`); `prepare`,
run before anyone is claimed, checks that their active versions are this release's. A
request names one `template_id`, so a batch's readers go in requests grouped by language
(`Recipient.language`), each group cut as below; a language whose template cannot be had
leaves its readers unsent and the others go. Each reader is then one personalization of a
v3 `mail/send` request: `dynamic_template_data` (their digest), their own headers
(List-Unsubscribe) and `custom_args` (the delivery id, echoed back by the event
webhook). SendGrid renders every digest server-side, so 1,000 different digests cost one
request.

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

What a request's answer means for its recipients, in `BatchResult` terms (the retries
themselves are `sendgrid_requests`'):
- 2xx: `accepted`;
- retries ran out: the recipients are in neither list;
- any other 4xx (400, 413, ...): the recipients are `rejected` and `error` holds SendGrid's
  own message;
- 401 or 403 (the key or the sender identity is wrong, not the recipients): neither that
  request nor the rest of the batch is attempted.
Recipients in neither list were not sent and may be sent again later. The batch's
`RequestLog` (a delivery's send journal) is told of each request before it goes and once
it is answered.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from email.utils import parseaddr
from typing import Any

import sendgrid
from python_http_client.client import Response

from newsletter import i18n
from newsletter.config import Settings
from newsletter.mail.batch import UNLOGGED, Batch, BatchResult, Recipient, RequestLog
from newsletter.mail.message import DATA_LIMIT
from newsletter.mail.render import DigestTemplate, render_digest
from newsletter.mail.senders import MailError, Message
from newsletter.mail.sendgrid_requests import Outcome, Requests
from newsletter.mail.sendgrid_templates import (
    TEMPLATE_NAME,
    SyncResult,
    TemplateError,
    Templates,
    TemplateState,
)

SENDGRID_HOST = "https://api.sendgrid.com"
# https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors (personalizations)
MAX_PERSONALIZATIONS = 1000
# https://www.twilio.com/docs/sendgrid/api-reference/mail-send#limitations: "less than 30MB".
# Counted in decimal megabytes, the smaller reading.
MAX_REQUEST_BYTES = 30_000_000

# Refusals that concern the account, not this request: every later request would get the same.
_ACCOUNT = frozenset({401, 403})
# What json.dumps writes before a personalization's data, its last key.
_DATA_KEY = ', "dynamic_template_data": '

logger = logging.getLogger(__name__)


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
        self.host = host.rstrip("/")
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # python_http_client waits forever by default; a hung connection would stall a worker
        # (and hold its claimed deliveries) indefinitely. Every sub-client it builds for a
        # URL path (client.mail.send) copies this value into urlopen(timeout=...).
        self.client.client.timeout = timeout
        name, address = parseaddr(mail_from)
        if "@" not in address:
            raise ValueError(f"MAIL_FROM {mail_from!r} has no email address")
        self.sender: dict[str, str] = {"email": address, **({"name": name} if name else {})}
        self.requests = Requests(max_attempts=max_attempts, backoff=backoff,
                                 max_wait=max_wait, sleep=sleep, clock=clock)
        self.templates = Templates(self.client, self.requests, host=self.host, api_key=api_key,
                                   name=template_name, sync_template=sync_template)
        self.click_tracking = click_tracking
        self.open_tracking = open_tracking
        self.max_request_bytes = max_request_bytes

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
        """Check (or sync) the digest templates; TemplateError says what is wrong.

        The English template must be right, or nothing is sent. Another language's that is
        not (SENDGRID_TEMPLATE_SYNC off, and nobody ran `newsletter sendgrid sync` since
        the release) is logged here, and `send_batch` leaves only its readers unsent.
        """
        self.templates.template_id()
        for language in i18n.interface_languages()[1:]:
            try:
                self.templates.template_id(language)
            except TemplateError as exc:
                logger.error("%s: its readers stay unsent until it is current", exc)

    def sync(self, template: DigestTemplate | None = None) -> SyncResult:
        """Make this release's digest (English, or `template`'s language) its template's
        active version; safe to run again."""
        return self.templates.sync(template)

    def sync_all(self) -> list[SyncResult]:
        """Every language's digest template made current (`newsletter sendgrid sync`)."""
        return self.templates.sync_all()

    def template_state(self) -> TemplateState:
        return self.templates.state()

    def template_states(self) -> list[TemplateState]:
        return self.templates.states()

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
        for body, chunk in self._requests(batch):
            if isinstance(chunk, TemplateError):
                # Not the readers' fault: they stay unsent, for a run after the operator
                # syncs; the other languages' readers go.
                error = str(chunk)
                continue
            assert body is not None
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

    def _requests(self, batch: Batch
                  ) -> Iterator[tuple[str, list[Recipient]] | tuple[None, TemplateError]]:
        """The batch's requests, language by language (in the order the batch first names
        each), each language's from its own template; a language whose template cannot be
        had yields its error instead, once, when its turn comes."""
        by_language: dict[str, list[Recipient]] = {}
        for recipient in batch.recipients:
            by_language.setdefault(i18n.speaks(recipient.language), []).append(recipient)
        for language, readers in by_language.items():
            try:
                template_id = self.templates.template_id(language)
            except TemplateError as exc:
                yield None, exc
                continue
            yield from self.requests_for(Batch(readers, batch.headers), template_id)

    def tracking_settings(self, tracked: bool) -> dict[str, Any]:
        """A request's `tracking_settings`: the operator's choice for readers who allow
        tracking (`tracked`), off for everyone else."""
        return {"click_tracking": {"enable": tracked and self.click_tracking,
                                   "enable_text": False},
                "open_tracking": {"enable": tracked and self.open_tracking}}

    def requests_for(self, batch: Batch, template_id: str
                     ) -> Iterator[tuple[str, list[Recipient]]]:
        """The v3 mail/send bodies for a batch of one language, as JSON, each with the
        readers it carries.

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
                digest = render_digest(recipient.data, recipient.language)
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

    def _post(self, body: str) -> Outcome:
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

        return self.requests.send(request)


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
