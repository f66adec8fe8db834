"""Email rendering: pure functions from a template and values to subject, HTML and text.

Two kinds of template live in email_templates/:

- The digest is a Handlebars template, the format of SendGrid's dynamic templates. Its MJML
  layout is compiled to HTML once per source (MJML is slow) with the Handlebars tags left
  as they are; `digest.txt` is its plain-text twin, and the subject is a template too.
  SendGrid renders it server-side from each reader's `dynamic_template_data`
  (`newsletter sendgrid sync` uploads it); the file, console and SMTP senders render the
  very same template here with `render_digest`, so there is one way of building a digest.
  The HTML uses `{{x}}`, which HTML-escapes; the text twin uses `{{{x}}}`, which does not
  (it is not HTML). Handlebars never evaluates a value as a template, so feed text such as
  `{{ 7*7 }}` arrives as written.
- The confirmation, welcome and "already subscribed" mails are MJML with Jinja
  placeholders, filled per recipient with autoescaping (`render_email`) and sent as plain
  content.

Every mail loads nothing from anywhere: MJML's web fonts are switched off (`to_html`), the
templates name a system font stack, and hold no image, stylesheet or script from a host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from mjml import mjml2html
from pybars import Compiler

from newsletter import shipped

# Package data, so a built wheel renders the same emails as a source checkout.
TEMPLATE_DIR = shipped("email_templates")

# The digest's subject, as a template: the reader's own subject line from their data. Three
# braces, as SendGrid asks of subjects holding ', " or & (a subject is not HTML).
# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars#replacement-with-html
DIGEST_SUBJECT = "{{{s}}}"

_html_env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_text_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True,
                        trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class RenderedEmail:
    html: str
    text: str


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class DigestTemplate:
    """The digest as SendGrid stores it: a subject, HTML and text, all Handlebars."""

    subject: str
    html: str
    text: str

    @property
    def version(self) -> str:
        """A content hash: the same template always has the same version, a changed one
        a new one (so `newsletter sendgrid sync` uploads only what changed)."""
        digest = hashlib.sha256()
        for part in (self.subject, self.html, self.text):
            digest.update(part.encode())
            digest.update(b"\x00")
        return digest.hexdigest()[:12]


class TemplateMissing(Exception):
    pass


def _source(name: str) -> str:
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise TemplateMissing(f"{path} does not exist")
    return path.read_text(encoding="utf-8")


def to_html(mjml_source: str) -> str:
    """MJML compiled to HTML, without MJML's web fonts.

    MJML adds a `<link>` and an `@import` of fonts.googleapis.com whenever a font-family
    names one of its default fonts (our stack's Roboto is one): a mail client that follows
    them tells Google who opened which mail. No font list, no import; the stack falls back
    to the reader's own system fonts.
    """
    return mjml2html(mjml_source, fonts={})


@lru_cache(maxsize=32)
def _compiled_html(source: str) -> Template:
    # Keyed by the MJML source itself: an edited template compiles again, an unchanged
    # one never does.
    return _html_env.from_string(to_html(source))


@lru_cache(maxsize=32)
def _compiled_text(source: str) -> Template:
    return _text_env.from_string(source)


def render_email(name: str, values: Mapping[str, Any]) -> RenderedEmail:
    """`name.mjml` and `name.txt` from email_templates/ (Jinja), filled with `values`."""
    html = _compiled_html(_source(f"{name}.mjml")).render(**values)
    text = _compiled_text(_source(f"{name}.txt")).render(**values)
    return RenderedEmail(html=html, text=text)


def digest_template() -> DigestTemplate:
    """The digest template, its MJML compiled to HTML (once per source)."""
    return _digest_template(_source("digest.mjml"), _source("digest.txt"))


@lru_cache(maxsize=4)
def _digest_template(mjml_source: str, text_source: str) -> DigestTemplate:
    return DigestTemplate(subject=DIGEST_SUBJECT, html=to_html(mjml_source), text=text_source)


Renderer = Callable[..., str]


@lru_cache(maxsize=12)
def _handlebars(source: str) -> Renderer:
    return Compiler().compile(source)


def _unsupported(name: str) -> Callable[..., str]:
    def refuse(*_args: object, **_kwargs: object) -> str:
        raise ValueError(f"the {name!r} helper is not one SendGrid supports")
    return refuse


# pybars ships `with`, `lookup` and `log`, which SendGrid's list does not name; a template
# that uses them would render here and not there, so here they fail too.
# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars
_LOCAL_HELPERS = {name: _unsupported(name) for name in ("with", "lookup", "log")}


def render_digest(data: Mapping[str, Any]) -> RenderedDigest:
    """One reader's digest from their `dynamic_template_data`, as SendGrid would render it."""
    template = digest_template()
    context = dict(data)
    return RenderedDigest(
        subject=_handlebars(template.subject)(context, helpers=_LOCAL_HELPERS),
        html=_handlebars(template.html)(context, helpers=_LOCAL_HELPERS),
        text=_handlebars(template.text)(context, helpers=_LOCAL_HELPERS),
    )
