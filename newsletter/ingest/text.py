"""A feed's text made plain: HTML fragments to text, arXiv's wrapped lines joined, and its
one-string author lists split into names. Pure."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_AUTHOR_SUFFIXES = {"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"}
_SPACES = re.compile(r"[ \t\r\f\v]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(value: str) -> str:
    """Visible text of an HTML fragment (RSS 1.0 escapes its abstracts and authors)."""
    if "<" not in value and "&" not in value:
        return value  # plain text, the common case: skip the parser
    extractor = _TextExtractor()
    extractor.feed(value)
    extractor.close()
    return "".join(extractor.parts)


def clean(value: str | None) -> str:
    """Collapse runs of spaces and line breaks; arXiv wraps lines mid-sentence."""
    if not value:
        return ""
    lines = [_SPACES.sub(" ", line).strip() for line in value.splitlines()]
    return " ".join(line for line in lines if line)


def split_authors(value: str) -> tuple[str, ...]:
    """arXiv's dc:creator is ONE comma-separated string; "Jr." stays with its name."""
    names: list[str] = []
    for raw in value.split(","):
        name = clean(raw)
        if not name:
            continue
        if names and name.lower() in _AUTHOR_SUFFIXES:
            names[-1] = f"{names[-1]}, {name}"
        else:
            names.append(name)
    return tuple(names)
