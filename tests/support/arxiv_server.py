"""A local stand-in for arXiv: its API (export.arxiv.org/api/query) and its author feeds.

Built from arXiv's own documentation and answered from a real API document
(tests/fixtures/arxiv/api_query_cs.LG_OR_cs.AI_20.xml):
- `id_list` requests (API user manual, https://info.arxiv.org/help/api/user-manual.html,
  3.1.1): an Atom feed with the entries of the listed ids that it knows, in the order asked
  and at most `max_results` of them (default 10); an unknown id is simply absent
  (totalResults counts the rest); a malformed id fails the whole request with HTTP 400
  and one entry titled "Error" (3.4).
- `search_query` requests of title phrases, `ti:"..."` joined by OR (3.1.1, and appendix
  5.1 on field prefixes, phrases in double quotes and Boolean operators): the entries whose
  title holds one of the phrases, word for word, ignoring case and punctuation as arXiv's
  search does; at most `max_results`.
- Author feeds (https://info.arxiv.org/help/author_identifiers.html): an author identifier
  or a linked ORCID iD names a feed at /a/<id>.atom2, an Atom feed of the author's
  articles whose entries are written as the API writes them. An identifier arXiv does not
  know is answered 400 "Author ... not found", as arXiv's browse service does.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import arxiv_fixture
from tests.support.http import Reply, Request, ScriptedServer

API_DOCUMENT = arxiv_fixture("api_query_cs.LG_OR_cs.AI_20.xml")
ATOM = "http://www.w3.org/2005/Atom"
OPENSEARCH = "http://a9.com/-/spec/opensearch/1.1/"
for _prefix, _uri in (("", ATOM), ("opensearch", OPENSEARCH),
                      ("arxiv", "http://arxiv.org/schemas/atom")):
    ET.register_namespace(_prefix, _uri)
# What the API takes for an id (arXiv identifier help page; the stand-in fails a request
# with a malformed id as the API does: one "Error" entry, user manual 3.4).
_WELL_FORMED = re.compile(r"^(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})(v\d+)?$")
_PHRASE = re.compile(r'ti:"([^"]*)"')


def _words(text: str) -> str:
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", flat.lower()).split())


def _versionless(arxiv_id: str) -> str:
    return re.sub(r"v\d+$", "", arxiv_id)


class ArxivAPI(ScriptedServer):
    """arXiv's API and author feeds, from `document`'s entries. `authors` maps an author
    identifier (or ORCID iD) to the arXiv ids of their papers, newest first."""

    def __init__(self, document: Path = API_DOCUMENT, *, down: bool = False,
                 authors: Mapping[str, Sequence[str]] | None = None) -> None:
        self.tree = ET.parse(document)
        self.down = down
        self.authors = dict(authors or {})
        super().__init__(self._answer)

    def _entries(self) -> tuple[ET.Element, dict[str, ET.Element]]:
        feed = ET.fromstring(ET.tostring(self.tree.getroot()))
        entries = {_versionless(e.findtext(f"{{{ATOM}}}id", "").split("/abs/")[-1]): e
                   for e in feed.findall(f"{{{ATOM}}}entry")}
        for entry in entries.values():
            feed.remove(entry)
        return feed, entries

    def _answer(self, request: Request) -> Reply:
        if self.down:
            return Reply(503, b"Service Unavailable", {"Retry-After": "0"})
        if request.path.startswith("/a/"):
            return self._author_feed(request.path.removeprefix("/a/"))
        if request.path != "/api/query":
            return Reply(404, b"Not Found")
        if request.query.get("search_query"):
            return self._search(request)
        ids = [i for i in ",".join(request.query.get("id_list", [])).split(",") if i]
        if not ids or not all(_WELL_FORMED.match(i) for i in ids):
            return Reply(400, arxiv_fixture("api_error_400.xml").read_bytes(),
                         {"Content-Type": "application/atom+xml"})
        limit = int(request.query.get("max_results", ["10"])[0])
        feed, entries = self._entries()
        found = [entries[_versionless(i)] for i in ids if _versionless(i) in entries]
        return self._feed(feed, found[:limit], len(found), limit,
                          f"search_query=&id_list={','.join(ids)}")

    def _search(self, request: Request) -> Reply:
        query = request.query["search_query"][0]
        phrases = [_words(p) for p in _PHRASE.findall(query)]
        # Only what the product asks: title phrases joined by OR.
        if not phrases or _PHRASE.sub("", query).replace("OR", "").strip():
            return Reply(400, arxiv_fixture("api_error_400.xml").read_bytes(),
                         {"Content-Type": "application/atom+xml"})
        limit = int(request.query.get("max_results", ["10"])[0])
        feed, entries = self._entries()
        found = [e for e in entries.values()
                 if any(p and p in _words(e.findtext(f"{{{ATOM}}}title", ""))
                        for p in phrases)]
        return self._feed(feed, found[:limit], len(found), limit, f"search_query={query}")

    def _feed(self, feed: ET.Element, found: list[ET.Element], total: int, limit: int,
              asked: str) -> Reply:
        feed.extend(found)
        feed.find(f"{{{ATOM}}}title").text = (  # type: ignore[union-attr]
            f"arXiv Query: {asked}&start=0&max_results={limit}")
        feed.find(f"{{{OPENSEARCH}}}totalResults").text = str(total)  # type: ignore[union-attr]
        feed.find(f"{{{OPENSEARCH}}}itemsPerPage").text = str(limit)  # type: ignore[union-attr]
        body = b"<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(feed)
        return Reply(200, body, {"Content-Type": "application/atom+xml; charset=utf-8"})

    def _author_feed(self, name: str) -> Reply:
        author, _, kind = name.partition(".")
        if kind != "atom2" or author not in self.authors:
            return Reply(400, f"Author {author} not found".encode(),
                         {"Content-Type": "text/html; charset=utf-8"})
        _, entries = self._entries()
        feed = ET.Element(f"{{{ATOM}}}feed")
        ET.SubElement(feed, f"{{{ATOM}}}title").text = f"{author}'s articles on arXiv"
        ET.SubElement(feed, f"{{{ATOM}}}id").text = f"http://arxiv.org/a/{author}"
        ET.SubElement(feed, f"{{{ATOM}}}updated").text = "2026-09-24T00:00:00-04:00"
        ET.SubElement(feed, f"{{{ATOM}}}link", {
            "href": f"http://arxiv.org/a/{author}.atom2", "rel": "self",
            "type": "application/atom+xml"})
        feed.extend(entries[i] for i in self.authors[author] if i in entries)
        body = b"<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(feed)
        return Reply(200, body, {"Content-Type": "application/atom+xml; charset=utf-8"})
