"""The digest templates on SendGrid: one dynamic template per interface language,
versioned by its content hash.

The English digest is the template SENDGRID_TEMPLATE_NAME names (`paperwire-digest`, as
before there were languages, so an installation keeps its template); each other language's
is that name and the language (`paperwire-digest-fr`). A mail/send request names one
template, so the sender groups a batch's readers by language (sendgrid.py).

`sync` uploads a language's digest (`render.digest_template`) as a new version when no
version has its hash yet, and activates it (`sync_all`: every language, what `newsletter
sendgrid sync` runs); `template_id`, run before a send claims anyone and for each language
a batch holds, checks that the active version is this release's and syncs it, or, with
SENDGRID_TEMPLATE_SYNC off, stops that language's readers with what to do. Templates API:
https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates and its
versions (https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions).

SendGrid's limits, which this keeps far from: up to 300 transactional templates per
account or Subuser (transactional-templates, above), up to 300 versions across all of an
account's templates (transactional-templates-versions, above: "Each user can have up to 300
versions across all templates"), and 1,048,576 bytes of html_content and of
plain_content per version (MAX_TEMPLATE_BYTES). Paperwire makes one template per
interface language (two today) and one version per language and release whose digest
changed; a release with the same digest uploads nothing, and each upload deletes the
template's oldest inactive versions beyond KEEP_VERSIONS (the documented DELETE of a
version: .../transactional-templates-versions/delete-a-transactional-template-version), so
the account's versions stay at (1 + KEEP_VERSIONS) per language however many releases come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from newsletter import i18n
from newsletter.mail.render import DigestTemplate, digest_template
from newsletter.mail.senders import MailError
from newsletter.mail.sendgrid_requests import Requests

log = logging.getLogger(__name__)

# A template version's html_content and plain_content, each (Templates API, versions).
# https://www.twilio.com/docs/sendgrid/api-reference/transactional-templates-versions/create-a-new-transactional-template-version
MAX_TEMPLATE_BYTES = 1_048_576
TEMPLATE_NAME = "paperwire-digest"
# Inactive versions kept per template after an upload: the last releases' digests, to go
# back to by hand in SendGrid's editor.
KEEP_VERSIONS = 3


def template_name(base: str, language: str) -> str:
    """The template of one interface language: English keeps the base name."""
    return base if language == i18n.SOURCE_LANGUAGE else f"{base}-{language}"


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
    """The account's digest templates, one per interface language, read and kept current
    through the Templates API. `name` is the English template's, the others' stem."""

    def __init__(self, client: Any, requests: Requests, *, host: str, api_key: str,
                 name: str = TEMPLATE_NAME, sync_template: bool = True) -> None:
        self.client = client
        self.requests = requests
        self.host = host
        self.api_key = api_key
        self.name = name
        self.sync_template = sync_template

    def name_for(self, language: str) -> str:
        return template_name(self.name, language)

    def template_id(self, language: str = i18n.SOURCE_LANGUAGE) -> str:
        """The id of the dynamic template whose active version is this release's digest in
        this interface language."""
        template = digest_template(language)
        key = (self.host, self.api_key, self.name_for(template.language), template.version)
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
        """What SendGrid holds of one language's template (`template`'s; English by
        default)."""
        template = template or digest_template()
        name = self.name_for(template.language)
        wanted = f"{name}-{template.version}"
        found = self._find(name)
        if found is None:
            return TemplateState(name, wanted)
        detail = self._call("read template", lambda: self._templates()._(found).get())
        versions = tuple(detail.get("versions") or ())
        active = next((v.get("name") for v in versions if v.get("active") == 1), None)
        return TemplateState(name, wanted, found, active, versions)

    def states(self) -> list[TemplateState]:
        """Every interface language's template, English first."""
        return [self.state(digest_template(language))
                for language in i18n.interface_languages()]

    def sync_all(self) -> list[SyncResult]:
        """`sync` for every interface language, English first."""
        return [self.sync(digest_template(language))
                for language in i18n.interface_languages()]

    def sync(self, template: DigestTemplate | None = None,
             state: TemplateState | None = None) -> SyncResult:
        """Make this release's digest (`template`'s language; English by default) its
        template's active version, uploading it only if no version has its content hash
        yet. Safe to run again: it then does nothing."""
        template = template or digest_template()
        name = self.name_for(template.language)
        for part, value in (("HTML", template.html), ("text", template.text)):
            if len(value.encode()) > MAX_TEMPLATE_BYTES:
                raise TemplateError(f"the digest's {part} is over SendGrid's "
                                    f"{MAX_TEMPLATE_BYTES} bytes per template version")
        state = state or self.state(template)
        created = state.template_id is None
        template_id = state.template_id or self._call(
            "create template", lambda: self._templates().post(
                request_body={"name": name, "generation": "dynamic"}))["id"]
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
        if uploaded:
            self._prune(template_id, [*state.versions, same], keep=same.get("id"))
        log.info("sendgrid template %s (%s): version %s, uploaded=%s activated=%s",
                 name, template_id, state.wanted, uploaded, activated)
        _checked[(self.host, self.api_key, name, template.version)] = template_id
        return SyncResult(template_id, state.wanted, created, uploaded, activated)

    def _templates(self) -> Any:
        return self.client.client.templates

    def _prune(self, template_id: str, versions: list[Mapping[str, Any]],
               keep: str | None) -> None:
        """Delete the oldest inactive versions but KEEP_VERSIONS (never `keep`, the one
        just made active)."""
        inactive = [(str(v.get("updated_at") or ""), i, str(v["id"]))
                    for i, v in enumerate(versions) if v.get("id") and v.get("id") != keep]
        for _, _, version_id in sorted(inactive)[:max(0, len(inactive) - KEEP_VERSIONS)]:
            self._call("delete an old template version", lambda v=version_id: self
                       ._templates()._(template_id).versions._(v).delete())

    def _find(self, name: str) -> str | None:
        """The id of the dynamic template named `name`, if the account has one."""
        query: dict[str, Any] = {"generations": "dynamic", "page_size": 200}
        while True:
            page = self._call("list templates",
                              lambda q=dict(query): self._templates().get(query_params=q))
            for item in page.get("result") or ():
                if item.get("name") == name:
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
