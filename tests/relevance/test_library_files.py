"""A reader's library file, parsed (newsletter/relevance/library/files.py).

The fixtures in tests/fixtures/library are written by hand as each tool exports, with real
papers: `zotero.bib` (Zotero's default BibTeX export, tab-indented, capitals braced,
`eprint`/`archiveprefix`/`primaryclass` on preprints), `google_scholar.bib` (Google
Scholar: no abstract, no DOI, `journal={arXiv preprint arXiv:...}`, a key used twice),
`zotero.ris` (Zotero's RIS, CRLF line ends), `endnote.ris` (EndNote's Reference Manager
tags: T1, N2, JO, JF) and `zotero.json` (Zotero's CSL JSON, tab-indented).

Then each route to an arXiv id, TeX undone, duplicates, the limits, and hostile files,
each refused with a sentence naming its problem. Pure: no database, no network.
"""

from __future__ import annotations

import codecs
import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.relevance.library.files import (
    MAX_ABSTRACT,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TITLE,
    LibraryEntry,
    LibraryFileError,
    ParsedLibrary,
    Skipped,
    normalised_title,
    parse_library,
    reason_said,
)
from tests.conftest import LOCAL_FIXTURES

LIBRARY = LOCAL_FIXTURES / "library"


def fixture(name: str) -> bytes:
    return (LIBRARY / name).read_bytes()


def rows(parsed: ParsedLibrary) -> list[tuple[int, str, str | None, str | None]]:
    return [(e.number, e.title, e.arxiv_id, e.doi) for e in parsed.entries]


def skips(parsed: ParsedLibrary) -> list[tuple[int, str | None, str]]:
    return [(s.number, s.title, s.reason) for s in parsed.skipped]


def only(data: str) -> LibraryEntry:
    """The single entry a small file gives."""
    parsed = parse_library(data.encode())
    assert len(parsed.entries) == 1, parsed
    return parsed.entries[0]


def refused(data: bytes) -> str:
    with pytest.raises(LibraryFileError) as raised:
        parse_library(data)
    return str(raised.value)


# -- Real exports -------------------------------------------------------------------------


def test_zotero_bibtex() -> None:
    parsed = parse_library(fixture("zotero.bib"))
    assert parsed.format == "bibtex"
    assert rows(parsed) == [
        (1, "Attention Is All You Need", "1706.03762", None),
        (2, "BERT: Pre-training of Deep Bidirectional Transformers for Language "
            "Understanding", "1810.04805", None),
        (3, "Adam: A Method for Stochastic Optimization", "1412.6980", None),
        (4, "Denoising Diffusion Probabilistic Models", "2006.11239", None),
        (5, "Diffusion Schrödinger Bridge with Applications to Score-Based Generative "
            "Modeling", "2106.01357", None),
        (6, "Deep learning", None, "10.1038/nature14539"),
        (7, "Pattern Recognition and Machine Learning", None, None),
        (10, "The Large N Limit of Superconformal Field Theories and Supergravity",
         "hep-th/9711200", "10.1023/a:1026654312961"),
    ]
    assert skips(parsed) == [(8, None, "no-title"),
                             (9, "Attention is All you Need", "duplicate")]
    by_number = {e.number: e for e in parsed.entries}
    assert by_number[1].abstract is not None
    assert by_number[1].abstract.startswith("The dominant sequence transduction models")
    assert by_number[2].abstract is not None
    assert "GLUE score to 80.5% (7.7% point absolute improvement)" in by_number[2].abstract
    assert by_number[6].abstract is not None and by_number[6].abstract.endswith("and speech.")
    assert by_number[7].abstract is None and by_number[10].abstract is None


def test_google_scholar_bibtex() -> None:
    parsed = parse_library(fixture("google_scholar.bib"))
    assert parsed.format == "bibtex"
    assert rows(parsed) == [
        (1, "Attention is all you need", None, None),
        (2, "Bert: Pre-training of deep bidirectional transformers for language "
            "understanding", "1810.04805", None),
        (3, "Adam: A method for stochastic optimization", "1412.6980", None),
        (4, "Deep residual learning for image recognition", None, None),
        (5, "Deep learning", None, None),
        (6, "Long short-term memory", None, None),
        (7, "Diffusion Schrödinger bridge with applications to score-based generative "
            "modeling", None, None),
        (10, "The large N limit of superconformal field theories and supergravity",
         "hep-th/9711200", None),
    ]
    # The arXiv version under the same key as the NeurIPS one: read, and the same title.
    assert skips(parsed) == [(8, "Attention is all you need", "duplicate"),
                             (9, None, "no-title")]
    assert all(e.abstract is None for e in parsed.entries)


def test_zotero_ris() -> None:
    parsed = parse_library(fixture("zotero.ris"))
    assert parsed.format == "ris"
    assert rows(parsed) == [
        (1, "Attention Is All You Need", "1706.03762", None),
        (2, "LoRA: Low-Rank Adaptation of Large Language Models", "2106.09685", None),
        (3, "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
         "2201.11903", None),
        (4, "Highly accurate protein structure prediction with AlphaFold", None,
         "10.1038/s41586-021-03819-2"),
        (5, "Reinforcement Learning: An Introduction", None, None),
        (8, "Human-level control through deep reinforcement learning", None,
         "10.1038/nature14236"),
    ]
    assert skips(parsed) == [
        (6, None, "no-title"),
        (7, "LoRA: Low-Rank Adaptation of Large Language Models", "duplicate")]
    alphafold = parsed.entries[3]
    # Its abstract runs over two lines: one paragraph, no carriage return left.
    assert alphafold.abstract == (
        "Proteins are essential to life, and understanding their structure can facilitate a "
        "mechanistic understanding of their function. Through an enormous experimental "
        "effort, the structures of around 100,000 unique proteins have been determined, but "
        "this represents a small fraction of the billions of known protein sequences.")
    assert parsed.entries[2].abstract is None and parsed.entries[4].abstract is None


def test_endnote_ris_with_reference_manager_tags() -> None:
    parsed = parse_library(fixture("endnote.ris"))
    assert rows(parsed) == [
        (1, "Scaling Laws for Neural Language Models", "2001.08361", None),
        (2, "Learning Transferable Visual Models From Natural Language Supervision",
         "2103.00020", None),
        (3, "Long Short-Term Memory", None, "10.1162/neco.1997.9.8.1735"),
        (4, "The Elements of Statistical Learning: Data Mining, Inference, and Prediction",
         None, None),
    ]
    assert parsed.skipped == ()
    assert parsed.entries[0].abstract is not None
    assert parsed.entries[0].abstract.startswith("We study empirical scaling laws")  # N2


def test_zotero_csl_json() -> None:
    parsed = parse_library(fixture("zotero.json"))
    assert parsed.format == "csl-json"
    assert rows(parsed) == [
        (1, "Attention Is All You Need", "1706.03762", None),
        (2, "BERT: Pre-training of Deep Bidirectional Transformers for Language "
            "Understanding", "1810.04805", None),
        # Zotero's rich text (<span class="nocase">) is not part of the title.
        (3, "LoRA: Low-Rank Adaptation of Large Language Models", "2106.09685", None),
        (4, "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
         "2010.11929", None),
        (5, "Human-level control through deep reinforcement learning", None,
         "10.1038/nature14236"),
        (6, "Reinforcement Learning: An Introduction", None, None),
    ]
    assert skips(parsed) == [
        (7, None, "no-title"),
        (8, "Human-level control through deep reinforcement learning", "duplicate")]
    assert parsed.entries[4].abstract is not None
    assert parsed.entries[4].abstract.startswith("The theory of reinforcement learning")


def test_nothing_of_a_library_but_what_matching_needs_is_kept() -> None:
    assert [f.name for f in dataclasses.fields(LibraryEntry)] == [
        "number", "title", "arxiv_id", "doi", "abstract"]
    for name in ("zotero.bib", "zotero.ris", "zotero.json"):
        said = repr(parse_library(fixture(name)))
        for private in ("Shazeer", "Computer Science - Machine Learning", "2024/02/12",
                        "1476-4687", "Publisher: Nature"):
            assert private not in said


@pytest.mark.parametrize(("name", "form"), [
    ("zotero.bib", "bibtex"), ("google_scholar.bib", "bibtex"), ("zotero.ris", "ris"),
    ("endnote.ris", "ris"), ("zotero.json", "csl-json")])
def test_the_format_is_told_by_the_content(name: str, form: str) -> None:
    data = fixture(name)
    assert parse_library(data).format == form
    # Whatever it was called, re-encoded or preceded by a BOM, it is read the same.
    assert parse_library(codecs.BOM_UTF8 + data) == parse_library(data)
    assert parse_library(data.decode().encode("utf-16")) == parse_library(data)
    assert parse_library(codecs.BOM_UTF16_BE + data.decode().encode("utf-16-be")) \
        == parse_library(data)


def test_the_format_is_not_fooled_by_what_fields_say() -> None:
    ris = "TY  - JOUR\nTI  - On @article{x, entries}\nER  - \n"
    assert parse_library(ris.encode()).format == "ris"
    bibtex = "% exported\n@article{x, title={A title}, note={TY  - JOUR}}\n"
    assert parse_library(bibtex.encode()).format == "bibtex"
    csl = '\n  {"items": [{"title": "An object with items, as some tools write"}]}'
    assert parse_library(csl.encode()).format == "csl-json"


# -- Routes to an arXiv id ----------------------------------------------------------------


@pytest.mark.parametrize(("fields", "arxiv_id"), [
    ("eprint = {2401.12345}, archiveprefix = {arXiv}, primaryclass = {cs.LG}", "2401.12345"),
    ("Eprint = {2401.12345v3}, archivePrefix = {arXiv}", "2401.12345"),
    ("eprint = {arXiv:2401.12345}", "2401.12345"),
    ("eprint = {9711200}, archivePrefix = {arXiv}, primaryClass = {hep-th}", "hep-th/9711200"),
    ("eprint = {math.GT/0309136}, archiveprefix = {arXiv}", "math/0309136"),
    ("doi = {10.48550/arXiv.2401.12345}", "2401.12345"),
    ("doi = {https://doi.org/10.48550/ARXIV.2401.12345}", "2401.12345"),
    ("url = {https://arxiv.org/abs/2401.12345v2}", "2401.12345"),
    ("url = {http://arxiv.org/pdf/2401.12345.pdf}", "2401.12345"),
    ("url = {https://arxiv.org/abs/hep-th/9711200}", "hep-th/9711200"),
    ("journal = {arXiv preprint arXiv:2401.12345}", "2401.12345"),
    ("journal = {arXiv preprint hep-th/9711200}", "hep-th/9711200"),
    ("note = {arXiv:2401.12345 [cs.LG]}", "2401.12345"),
    ("number = {arXiv:2401.12345}", "2401.12345"),
    ("publisher = {arXiv:2401.12345}", "2401.12345"),
    ("howpublished = {arXiv: 2401.12345.}", "2401.12345"),
    # The surest source first: the eprint over a link to another paper.
    ("url = {https://arxiv.org/abs/1706.03762}, eprint = {2401.12345}", "2401.12345"),
    ("note = {arXiv:1706.03762}, doi = {10.48550/arXiv.2401.12345}", "2401.12345"),
    # Ids no paper can have (four digits after 2014, month 13) are not ids.
    ("eprint = {2401.1234}, archiveprefix = {arXiv}", None),
    ("note = {arXiv:2413.12345}", None),
    ("journal = {arXiv e-prints}", None),
    ("url = {https://example.org/abs/2401.12345}", None),
])
def test_bibtex_arxiv_routes(fields: str, arxiv_id: str | None) -> None:
    entry = only(f"@misc{{key, title = {{A paper}}, {fields}}}\n")
    assert entry.arxiv_id == arxiv_id
    assert entry.doi is None  # the arXiv DOI became the id; no other DOI was given


def test_ris_arxiv_routes() -> None:
    text = "".join(f"TY  - JOUR\nTI  - Paper {n}\n{line}\nER  - \n\n" for n, line in enumerate([
        "DO  - 10.48550/arXiv.2401.00001", "UR  - https://arxiv.org/abs/2401.00002v1",
        "UR  - https://example.org; https://arxiv.org/pdf/2401.00003", "N1  - arXiv:2401.00004",
        "JO  - arXiv preprint arXiv:2401.00005", "T2  - arXiv:2401.00006 [cs]",
        "AN  - arXiv:2401.00007", "M1  - arXiv:2401.00008", "DO  - 10.1000/xyz123"], 1))
    parsed = parse_library(text.encode())
    assert [e.arxiv_id for e in parsed.entries] == [
        "2401.00001", "2401.00002", "2401.00003", "2401.00004", "2401.00005", "2401.00006",
        "2401.00007", "2401.00008", None]
    assert parsed.entries[-1].doi == "10.1000/xyz123"


def test_csl_json_arxiv_routes() -> None:
    items = [{"title": "Paper 1", "DOI": "10.48550/arXiv.2401.00001"},
             {"title": "Paper 2", "URL": "http://arxiv.org/abs/2401.00002"},
             {"title": "Paper 3", "number": "arXiv:2401.00003"},
             {"title": "Paper 4", "archive_location": "arXiv:2401.00004"},
             {"title": "Paper 5", "container-title": "arXiv preprint arXiv:2401.00005"},
             {"title": "Paper 6", "note": "arXiv:2401.00006 [cs]"},
             {"title": "Paper 7", "number": 7, "DOI": "DOI:10.1000/ABC"}]
    parsed = parse_library(json.dumps(items).encode())
    assert [(e.arxiv_id, e.doi) for e in parsed.entries] == [
        ("2401.00001", None), ("2401.00002", None), ("2401.00003", None),
        ("2401.00004", None), ("2401.00005", None), ("2401.00006", None),
        (None, "10.1000/abc")]


def test_an_entry_with_an_arxiv_id_needs_no_title() -> None:
    entry = only("@misc{key, eprint = {2401.12345}, archiveprefix = {arXiv}}\n")
    assert (entry.title, entry.arxiv_id) == ("", "2401.12345")


@pytest.mark.parametrize(("written", "doi"), [
    ("10.1038/NATURE14539", "10.1038/nature14539"),
    ("https://doi.org/10.1038/nature14539", "10.1038/nature14539"),
    ("http://dx.doi.org/10.1038/nature14539", "10.1038/nature14539"),
    ("doi:10.1038/nature14539", "10.1038/nature14539"),
    ("10.1002/(SICI)1097-4571(199806)49:8\\_693::AID-ASI4>3.0.CO;2-0",
     "10.1002/(sici)1097-4571(199806)49:8_693::aid-asi4>3.0.co;2-0"),
    ("not a doi", None),
    ("", None),
])
def test_dois(written: str, doi: str | None) -> None:
    assert only(f"@article{{key, title = {{A paper}}, doi = {{{written}}}}}\n").doi == doi


# -- Text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("tex", "text"), [
    ('M{\\"u}ller', "Müller"),
    ('M\\"{u}ller', "Müller"),
    ('M\\"uller', "Müller"),
    ("{\\'E}cole and caf\\'{e}", "École and café"),
    ('Na{\\"\\i}ve Bayes', "Naïve Bayes"),
    ("Gar\\c{c}on, \\v{S}koda, Erd\\H{o}s, \\c c", "Garçon, Škoda, Erdős, ç"),
    ("{\\ss}, {\\o}, {\\AA}ngstr{\\\"o}m, {\\L}ukasz", "ß, ø, Ångström, Łukasz"),
    ("Search \\& Rescue", "Search & Rescue"),
    ("50\\% faster, \\$5, C\\#, a\\_b", "50% faster, $5, C#, a_b"),
    ("{BERT}: {Pre}-training", "BERT: Pre-training"),
    ("\\textbf{Bold} and \\emph{em} and \\textit {it}", "Bold and em and it"),
    ("The $\\alpha$-divergence in $O(n \\log n)$", "The $\\alpha$-divergence in $O(n \\log n)$"),
    ("A~B \\\\ C\n\t  D", "A B C D"),
    ("Unbalanced {braces} } here {", "Unbalanced braces here"),
    ("\\LaTeX{} and \\TeX{}", "LaTeX and TeX"),
    ("\\url{https://example.org/a}", "https://example.org/a"),
    # Zotero's own escapes of ^ < > _ (its export writes \$2^{22}\$ so).
    ("\\$2{\\textasciicircum}\\{22\\}\\$ and {\\textless}3", "$2^{22}$ and <3"),
])
def test_tex_is_undone_in_titles(tex: str, text: str) -> None:
    assert only(f"@misc{{key, title = {{{tex}}}}}\n").title == text


def test_tex_is_undone_in_abstracts_and_not_in_other_formats() -> None:
    entry = only("@misc{k, title={T}, abstract={We reach 80.5\\% with {BERT} f{\\\"u}r all}}\n")
    assert entry.abstract == "We reach 80.5% with BERT für all"
    # RIS and CSL JSON carry plain text: a backslash or a percent sign there is the text.
    ris = "TY  - JOUR\nTI  - 50% of {BERT} \\& more\nER  - \n"
    assert parse_library(ris.encode()).entries[0].title == "50% of {BERT} \\& more"


def test_lengths() -> None:
    long_title = "word " * 300
    entry = only(f"@misc{{k, title = {{{long_title}}}, abstract = {{{'lorem ' * 2000}}}}}\n")
    assert len(entry.title) <= MAX_TITLE and entry.title.startswith("word word")
    assert entry.abstract is not None
    assert len(entry.abstract) <= MAX_ABSTRACT and entry.abstract.endswith("lorem")
    assert only("@misc{k, title = {T}, abstract = {Too short.}}\n").abstract is None
    assert only("@misc{k, title = {T}, abstract = {}}\n").abstract is None
    unbroken = only(f"@misc{{k, title = {{T}}, abstract = {{{'x' * 9000}}}}}\n").abstract
    assert unbroken == "x" * MAX_ABSTRACT


def test_normalised_title() -> None:
    assert normalised_title("{BERT}: Pre-training of  Deep\tTransformers") \
        == "bert pre training of deep transformers"
    assert normalised_title('Schr{\\"o}dinger Bridges') == normalised_title("Schrödinger bridges") \
        == "schrodinger bridges"
    # TeX commands go whole, math or not: arXiv's own titles keep $\alpha$ as written.
    assert normalised_title("The $\\alpha$-divergence") == "the divergence"
    assert normalised_title("Straße") == "strasse"
    assert normalised_title("--- {} ---") == ""


# -- Duplicates ---------------------------------------------------------------------------


def test_duplicates_keep_the_first() -> None:
    bibtex = """
@misc{a, title = {Attention Is All You Need}, eprint = {1706.03762}}
@misc{b, title = {A different title, same paper}, url = {https://arxiv.org/abs/1706.03762v7}}
@article{c, title = {Deep learning}, doi = {10.1038/nature14539}}
@article{d, title = {Deep learning (reprint)}, doi = {https://doi.org/10.1038/NATURE14539}}
@inproceedings{e, title = {Attention is {All} you {Need}}}
@misc{f, title = {ATTENTION IS ALL YOU NEED!}}
@misc{a, title = {A repeated key, another paper}}
"""
    parsed = parse_library(bibtex.encode())
    assert [e.number for e in parsed.entries] == [1, 3, 7]
    assert skips(parsed) == [(2, "A different title, same paper", "duplicate"),
                             (4, "Deep learning (reprint)", "duplicate"),
                             (5, "Attention is All you Need", "duplicate"),
                             (6, "ATTENTION IS ALL YOU NEED!", "duplicate")]


# -- What cannot be read ------------------------------------------------------------------


def test_a_broken_bibtex_entry_costs_that_entry_only() -> None:
    bibtex = """@article{ok1, title = {First}}
@article{broken, title = {Never closed
@article{ok2, title = {Second}, title = {Repeated field}}
@article{ok3, title = "Quoted", journal = nips}
"""
    parsed = parse_library(bibtex.encode())
    assert rows(parsed) == [(1, "First", None, None), (3, "Second", None, None),
                            (4, "Quoted", None, None)]
    assert skips(parsed) == [(2, None, "unreadable")]


def test_a_stray_ris_line_costs_nothing_and_a_last_record_needs_no_er() -> None:
    ris = ("TY  - JOUR\nTI  - First\nER  - \n"
           "TY  - JOUR\na continuation line before any tag\nTI  - Second\nER  - \n"
           "TY  - JOUR\nTI  - Third, the file cut before its ER\n")
    parsed = parse_library(ris.encode())
    assert [e.title for e in parsed.entries] == ["First", "Second",
                                                 "Third, the file cut before its ER"]


def test_string_references_are_resolved() -> None:
    bibtex = ('@string{arxivpre = "arXiv preprint arXiv:2401.12345"}\n'
              "@article{k, title = {T}, journal = ArXivPre}\n")
    assert only(bibtex).arxiv_id == "2401.12345"


@pytest.mark.parametrize(("data", "said"), [
    (b"", "empty"),
    (b" \n\t\r\n", "empty"),
    (codecs.BOM_UTF8 + b"\n", "empty"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "looks like a PDF"),
    (b"PK\x03\x04\x14\x00\x06\x00", "ZIP"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image"),
    (b"@article{k,\x00 title={T}}", "not a text file"),
    (b"@article{k, title={Caf\xe9}}", "not UTF-8"),
    (codecs.BOM_UTF16_LE + b"\x00\xd8", "not UTF-8"),  # a lone surrogate
    (b"Dear editor, here is my library.", "not a BibTeX, RIS or CSL JSON file"),
    (b"[{\"title\": \"Unclosed\"", "not valid JSON"),
    (b"[" * 10_000 + b"]" * 10_000, "nested too deeply"),
    (b"[" * 100_000, "nested too deeply"),
    (b'[{"title": "T", "x": ' + b"[" * 50 + b"]" * 50 + b"}]", "nested too deeply"),
    (b"[1, 2, 3]", "not a CSL JSON library"),
    (b'{"title": "One item, not a list"}', "not a CSL JSON library"),
    (b'{"items": "nothing"}', "not a CSL JSON library"),
    (b"[]", "no entry with a title or an arXiv identifier"),
    (b"@misc{k, year = {2020}}\n@comment{x}", "no entry with a title or an arXiv identifier"),
    (b"TY  - ELEC\nUR  - https://example.org\nER  - \n", "no entry with a title"),
])
def test_hostile_files_are_refused_with_a_sentence(data: bytes, said: str) -> None:
    assert said in refused(data)


def test_the_size_is_checked_before_anything_else() -> None:
    assert "larger than 5 MB" in refused(b"\xff" * (MAX_FILE_BYTES + 1))
    assert "larger than 5 MB" in refused(b"%PDF" + b" " * MAX_FILE_BYTES)


def test_a_full_file_is_read_to_its_limit_and_no_further() -> None:
    abstract = "We study the thing at hand with care and report what we found. " * 20
    entries, number = [], 0
    while sum(map(len, entries)) < MAX_FILE_BYTES - 2000:
        number += 1
        entries.append(f"@misc{{key{number},\n\ttitle = {{Paper {{Number}} {number}}},\n"
                       f"\tabstract = {{{abstract}}},\n\teprint = {{2401.{number:05d}}},\n}}\n")
    data = "".join(entries[:-1]).encode()
    assert len(data) <= MAX_FILE_BYTES and number - 1 > MAX_ENTRIES
    parsed = parse_library(data)
    assert len(parsed.entries) == MAX_ENTRIES
    assert parsed.entries[-1] == LibraryEntry(MAX_ENTRIES, f"Paper Number {MAX_ENTRIES}",
                                              f"2401.{MAX_ENTRIES:05d}", None,
                                              abstract.strip())
    assert parsed.skipped == tuple(Skipped(n, None, "too-many")
                                   for n in range(MAX_ENTRIES + 1, number))


def test_huge_and_deep_fields_are_cut_not_fatal() -> None:
    huge = "@misc{k, title = {Huge}, abstract = {" + "word " * 800_000 + "}}\n"
    entry = only(huge)
    assert entry.abstract is not None and len(entry.abstract) <= MAX_ABSTRACT
    assert len(only("@misc{k, title = {" + "a" * 4_000_000 + "}}\n").title) == MAX_TITLE
    deep = "@misc{k, title = " + "{" * 1000 + "Deep" + "}" * 1000 + "}\n"
    assert only(deep).title == "Deep"
    deeper = ("@misc{a, title = " + "{" * 1_000_000 + "}" * 1_000_000 + "}\n"
              "@misc{b, title = {After it}}\n")
    assert [e.title for e in parse_library(deeper.encode()).entries] == ["After it"]
    # One 2 MB @string used by every entry is cut for each, not copied whole.
    shared = ('@string{big = "' + "a " * 1_000_000 + '"}\n'
              + "".join(f"@misc{{k{n}, title = {{T{n}}}, abstract = big, note = big}}\n"
                        for n in range(2000)))
    assert len(parse_library(shared.encode()).entries) == 2000


def test_reasons_in_words() -> None:
    assert reason_said("no-title") == "no title and no arXiv identifier"
    assert str(MAX_ENTRIES) in reason_said("too-many")
    for code in ("duplicate", "unreadable"):
        assert reason_said(code) and reason_said(code) != code
    assert reason_said("retired-code") == "retired-code"


# -- Anything at all ----------------------------------------------------------------------


def _either(data: bytes) -> None:
    try:
        parsed = parse_library(data)
    except LibraryFileError as exc:
        assert str(exc)
        return
    assert isinstance(parsed, ParsedLibrary) and parsed.entries
    assert all(e.title or e.arxiv_id for e in parsed.entries)


_OPENINGS = st.sampled_from(["", "@article{k,", "@misc{k, title = {", "TY  - JOUR\n", "[",
                             '[{"title": ', "{", "\ufeff", "@string{a = "])
_PIECES = st.sampled_from(["{", "}", "\\", "\"", ",", "=", "@", "\n", "ER  - \n",
                           "TI  - x\n", "title = ", "arXiv:2401.12345", "$", "~", "#",
                           "[", "]", ":", "\\\"", "{\\'e}", "\r\n", "  - "])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_library_or_a_sentence(data: bytes) -> None:
    _either(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPENINGS, st.lists(st.one_of(_PIECES, st.text(max_size=20)), max_size=60))
def test_any_text_shaped_like_a_library_gives_a_library_or_a_sentence(
        opening: str, pieces: list[str]) -> None:
    _either((opening + "".join(pieces)).encode("utf-8", "surrogatepass"))
