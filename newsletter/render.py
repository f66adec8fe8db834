"""Email rendering: pure functions from a template name and values to HTML and text.

An MJML layout is compiled to HTML once per template source (MJML is slow next to Jinja)
and keeps its Jinja placeholders; each recipient's values are then filled in by Jinja
with autoescaping, so paper text from feeds can never inject markup into an email.
The plain-text twin is a Jinja template too, without escaping (it is not HTML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from mjml import mjml2html

# Package data, so a built wheel renders the same emails as a source checkout.
TEMPLATE_DIR = resources.files("newsletter") / "email_templates"

_html_env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
_text_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True,
                        trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class RenderedEmail:
    html: str
    text: str


class TemplateMissing(Exception):
    pass


def _source(name: str) -> str:
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise TemplateMissing(f"{path} does not exist")
    return path.read_text(encoding="utf-8")


@lru_cache(maxsize=32)
def _compiled_html(source: str) -> Template:
    # Keyed by the MJML source itself: an edited template compiles again, an unchanged
    # one never does.
    return _html_env.from_string(mjml2html(source))


@lru_cache(maxsize=32)
def _compiled_text(source: str) -> Template:
    return _text_env.from_string(source)


def render_email(name: str, values: Mapping[str, Any]) -> RenderedEmail:
    """`name.mjml` and `name.txt` from email_templates/, filled with `values`."""
    html = _compiled_html(_source(f"{name}.mjml")).render(**values)
    text = _compiled_text(_source(f"{name}.txt")).render(**values)
    return RenderedEmail(html=html, text=text)


def render_fragment(name: str, values: Mapping[str, Any]) -> str:
    """A piece of an email from email_templates/: `.html` autoescaped, `.txt` as is."""
    source = _source(name)
    template = (_compiled_fragment(source) if name.endswith(".html")
                else _compiled_text(source))
    return template.render(**values)


@lru_cache(maxsize=32)
def _compiled_fragment(source: str) -> Template:
    return _html_env.from_string(source)
