"""The digest template on SendGrid: a dynamic template, versioned by its content hash.

`sync` uploads this release's digest (`render.digest_template`) as a new version when no
version has its hash yet, and activates it; `template_id`, run before a send claims anyone,
checks that the active version is this release's and syncs it, or, with
SENDGRID_TEMPLATE_SYNC off, stops the send with what to do. Templates API:
https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates and its
versions (https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from newsletter.mail.render import DigestTemplate, digest_template
from newsletter.mail.senders import MailError
from newsletter.mail.sendgrid_requests import Requests

log = logging.getLogger(__name__)

# A template version's html_content and plain_content, each (Templates API, versions).
# https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions/create-a-new-transactional-template-version
MAX_TEMPLATE_BYTES = 1_048_576
TEMPLATE_NAME = "paperwire-digest"

# Template ids this process has checked, by (host, key, name, version): one check per worker
# process, not one per chunk of an edition.
_checked: dict[tuple[str, str, str, str], str] = {}


class TemplateError(MailError):
    """The digest template is missing or outdated on SendGrid, or could not be synced."""


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


class Templates:
    """The account's digest template, read and kept current through the Templates API."""

    def __init__(self, client: Any, requests: Requests, *, host: str, api_key: str,
                 name: str = TEMPLATE_NAME, sync_template: bool = True) -> None:
        self.client = client
        self.requests = requests
        self.host = host
        self.api_key = api_key
        self.name = name
        self.sync_template = sync_template

    def template_id(self) -> str:
        """The id of the dynamic template whose active version is this release's digest."""
        template = digest_template()
        key = (self.host, self.api_key, self.name, template.version)
        known = _checked.get(key)
        if known:
            return known
        state = self.state(template)
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

    def state(self, template: DigestTemplate | None = None) -> TemplateState:
        template = template or digest_template()
        wanted = f"{self.name}-{template.version}"
        found = self._find()
        if found is None:
            return TemplateState(self.name, wanted)
        detail = self._call("read template", lambda: self._templates()._(found).get())
        versions = tuple(detail.get("versions") or ())
        active = next((v.get("name") for v in versions if v.get("active") == 1), None)
        return TemplateState(self.name, wanted, found, active, versions)

    def sync(self, template: DigestTemplate | None = None,
             state: TemplateState | None = None) -> SyncResult:
        """Make this release's digest the template's active version, uploading it only if
        no version has its content hash yet. Safe to run again: it then does nothing."""
        template = template or digest_template()
        for part, value in (("HTML", template.html), ("text", template.text)):
            if len(value.encode()) > MAX_TEMPLATE_BYTES:
                raise TemplateError(f"the digest's {part} is over SendGrid's "
                                    f"{MAX_TEMPLATE_BYTES} bytes per template version")
        state = state or self.state(template)
        created = state.template_id is None
        template_id = state.template_id or self._call(
            "create template", lambda: self._templates().post(
                request_body={"name": self.name, "generation": "dynamic"}))["id"]
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
                 self.name, template_id, state.wanted, uploaded, activated)
        _checked[(self.host, self.api_key, self.name, template.version)] = template_id
        return SyncResult(template_id, state.wanted, created, uploaded, activated)

    def _templates(self) -> Any:
        return self.client.client.templates

    def _find(self) -> str | None:
        """The id of the dynamic template named `name`, if the account has one."""
        query: dict[str, Any] = {"generations": "dynamic", "page_size": 200}
        while True:
            page = self._call("list templates",
                              lambda q=dict(query): self._templates().get(query_params=q))
            for item in page.get("result") or ():
                if item.get("name") == self.name:
                    return str(item["id"])
            following = (page.get("_metadata") or {}).get("next")
            token = parse_qs(urlsplit(following).query).get("page_token") if following else None
            if not token:
                return None
            query["page_token"] = token[0]

    def _call(self, what: str, request: Callable[[], Any]) -> dict[str, Any]:
        outcome = self.requests.send(request)
        if not outcome.ok:
            raise TemplateError(f"could not {what}: {outcome.error}")
        return outcome.body if isinstance(outcome.body, dict) else {}
