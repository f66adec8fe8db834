"""Email rendering: pure functions from a template and values to subject, HTML and text.

Two kinds of template live in email_templates/:

- The digest is a Handlebars template, the format of SendGrid's dynamic templates, one per
  interface language (`i18n.interface_languages`), all made from one source: `digest.mjml`
  and `digest.txt` are Jinja with gettext (`{% trans %}`, `_()`), written with `[[ ]]` for
  Jinja's values so that Handlebars' `{{ }}` pass through untouched. Rendered once per
  language, a source becomes that language's Handlebars (its labels translated, its
  `lang` set), whose MJML is then compiled to HTML (MJML is slow: once per source and
  language) with the Handlebars tags left as they are; the subject is a template too.
  What changes from reader to reader (headline, date, why-lines, frequency) is in their
  data, already in their language (mail/message.py). SendGrid renders it server-side from
  each reader's `dynamic_template_data` (`newsletter sendgrid sync` uploads each
  language's); the file, console and SMTP senders render the very same template here with
  `render_digest`, so there is one way of building a digest.
  The HTML uses `{{x}}`, which HTML-escapes; the text twin uses `{{{x}}}`, which does not
  (it is not HTML). Handlebars never evaluates a value as a template, so feed text such as
  `{{ 7*7 }}` arrives as written.
- The confirmation, welcome and "already subscribed" mails are MJML with Jinja
  placeholders and gettext, filled per recipient with autoescaping in the recipient's
  language (`render_email`) and sent as plain content.

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

from newsletter import i18n, shipped

# Package data, so a built wheel renders the same emails as a source checkout.
TEMPLATE_DIR = shipped("email_templates")

# The digest's subject, as a template: the reader's own subject line from their data. Three
# braces, as SendGrid asks of subjects holding ', " or & (a subject is not HTML).
# https://www.twilio.com/docs/sendgrid/for-developers/sending-email/using-handlebars#replacement-with-html
DIGEST_SUBJECT = "{{{s}}}"

# Jinja's delimiters in the digest's sources, which are Handlebars too: `{{`, `{{{` and
# `{{#each` (whose `{#` is Jinja's default comment) must reach Handlebars as written.
# babel-mail.cfg gives the extractor the same options, or it would not see the strings.
DIGEST_SYNTAX: dict[str, str] = {
    "variable_start_string": "[[", "variable_end_string": "]]",
    "comment_start_string": "[#", "comment_end_string": "#]",
}


def _gettext_env(language: str, **options: Any) -> Environment:
    """A Jinja environment that speaks `language` (gettext from its catalog, not from the
    language in force, so a template cached for one language never mixes in another)."""
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True,
                      extensions=["jinja2.ext.i18n"], **options)
    words = i18n.catalog(language)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        words.gettext, words.ngettext, newstyle=True, pgettext=words.pgettext)
    return env


@lru_cache(maxsize=16)
def _html_env(language: str) -> Environment:
    return _gettext_env(language, autoescape=True)


@lru_cache(maxsize=16)
def _text_env(language: str) -> Environment:
    return _gettext_env(language, autoescape=False, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=16)
def _digest_env(language: str, html: bool) -> Environment:
    # The HTML source escapes what `_()` returns; `{% trans %}` text is the source's own
    # markup (Jinja marks it safe), so its translations are written as HTML too.
    return _gettext_env(language, autoescape=html, **DIGEST_SYNTAX)


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
    """The digest as SendGrid stores it: a subject, HTML and text, all Handlebars, in one
    interface language."""

    subject: str
    html: str
    text: str
    language: str = i18n.SOURCE_LANGUAGE

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
def _mjml_html(source: str) -> str:
    # Keyed by the MJML source itself: an edited template compiles again, an unchanged
    # one never does. The Jinja tags (gettext's among them) pass through MJML as text.
    return to_html(source)


@lru_cache(maxsize=64)
def _compiled_html(source: str, language: str) -> Template:
    return _html_env(language).from_string(_mjml_html(source))


@lru_cache(maxsize=64)
def _compiled_text(source: str, language: str) -> Template:
    return _text_env(language).from_string(source)


def render_email(name: str, values: Mapping[str, Any],
                 language: str = i18n.SOURCE_LANGUAGE) -> RenderedEmail:
    """`name.mjml` and `name.txt` from email_templates/ (Jinja), filled with `values`, their
    words in `language` (English if it has no catalog); `lang` is the HTML's language."""
    spoken = i18n.speaks(language)
    values = {**values, "lang": spoken}
    html = _compiled_html(_source(f"{name}.mjml"), spoken).render(**values)
    text = _compiled_text(_source(f"{name}.txt"), spoken).render(**values)
    return RenderedEmail(html=html, text=text)


def digest_template(language: str = i18n.SOURCE_LANGUAGE) -> DigestTemplate:
    """The digest template in an interface language (English if `language` has no
    catalog), its MJML compiled to HTML once per source and language."""
    return _digest_template(_source("digest.mjml"), _source("digest.txt"),
                            i18n.speaks(language))


def digest_mjml(language: str = i18n.SOURCE_LANGUAGE) -> str:
    """The digest's MJML layout in an interface language, before MJML compiles it."""
    return _in_language(_source("digest.mjml"), i18n.speaks(language), html=True)


def _in_language(source: str, language: str, *, html: bool) -> str:
    """A digest source (Jinja with gettext) rendered into that language's Handlebars."""
    return _digest_env(language, html).from_string(source).render(lang=language)


@lru_cache(maxsize=8)
def _digest_template(mjml_source: str, text_source: str, language: str) -> DigestTemplate:
    return DigestTemplate(subject=DIGEST_SUBJECT,
                          html=to_html(_in_language(mjml_source, language, html=True)),
                          text=_in_language(text_source, language, html=False),
                          language=language)


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


def render_digest(data: Mapping[str, Any],
                  language: str = i18n.SOURCE_LANGUAGE) -> RenderedDigest:
    """One reader's digest from their `dynamic_template_data`, as SendGrid would render it
    from the template of their interface language (`Recipient.language`)."""
    template = digest_template(language)
    context = dict(data)
    return RenderedDigest(
        subject=_handlebars(template.subject)(context, helpers=_LOCAL_HELPERS),
        html=_handlebars(template.html)(context, helpers=_LOCAL_HELPERS),
        text=_handlebars(template.text)(context, helpers=_LOCAL_HELPERS),
    )
