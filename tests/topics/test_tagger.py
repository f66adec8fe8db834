"""The offline tagger: topics a reader would agree with, for any taxonomy, never none."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from newsletter.topics import tagger
from newsletter.topics.taxonomy import MAX_TOPICS, built_in, parse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ML = built_in()
BIOLOGY = built_in("biology")

# arXiv 2205.06398, as the demo's sample feed has it (stat.ME, stat.AP, stat.ML): the
# keyword counter filed it under Efficient ML for "an efficient computational algorithm".
OUTLIER_TITLE = "Outlier Detection for Multi-Network Data"
OUTLIER_ABSTRACT = (
    "It has become routine in neuroscience studies to measure brain networks for different "
    "individuals using neuroimaging. These networks are typically expressed as adjacency "
    "matrices, with each cell containing a summary of connectivity between a pair of brain "
    "regions. There is an emerging statistical literature describing methods for the "
    "analysis of such multi-network data in which nodes are common across networks but the "
    "edges vary. However, there has been essentially no consideration of the important "
    "problem of outlier detection. In particular, for certain subjects, the neuroimaging "
    "data are so poor quality that the network cannot be reliably reconstructed. For such "
    "subjects, the resulting adjacency matrix may be mostly zero or exhibit a bizarre "
    "pattern not consistent with a functioning brain. These outlying networks may serve as "
    "influential points, contaminating subsequent statistical analyses. We propose a simple "
    "Outlier DetectIon for Networks (ODIN) method relying on an influence measure under a "
    "hierarchical generalized linear model for the adjacency matrices. An efficient "
    "computational algorithm is described, and ODIN is illustrated through simulations and "
    "an application to data from the UK Biobank. ODIN was successful in identifying "
    "moderate to extreme outliers. Removing such outliers can significantly change "
    "inferences in downstream applications.")


def micro_f1(pairs: list[tuple[list[str], list[str]]]) -> float:
    hit = sum(len(set(guess) & set(true)) for guess, true in pairs)
    precision = hit / sum(len(guess) for guess, _ in pairs)
    recall = hit / sum(len(true) for _, true in pairs)
    return 2 * precision * recall / (precision + recall)


def sample_papers() -> list[dict]:
    path = FIXTURES / "corpus" / "arxiv_ml_sample.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_a_statistics_paper_with_an_efficient_algorithm_is_not_efficient_ml() -> None:
    for categories in (("stat.ME", "stat.AP", "stat.ML"), ()):
        topics = tagger.guess_topics(OUTLIER_TITLE, OUTLIER_ABSTRACT, categories, ML)
        assert "efficient-ml" not in topics
        assert topics[0] == "graphs"  # networks of brain regions, nodes and edges


@pytest.mark.parametrize(("slug", "title", "abstract"), [
    ("vision", "Panoptic segmentation of street scenes with a lightweight backbone",
     "We segment every pixel of urban camera images into objects and stuff, and detect "
     "instances, outperforming prior work on Cityscapes."),
    ("nlp", "Neural machine translation for low-resource languages",
     "We translate between English and twelve African languages, with a new parallel "
     "corpus and a study of tokenization and morphology."),
    ("rl", "Offline policy optimization with conservative value functions",
     "An agent learns a policy from logged rewards without interacting with the "
     "environment; we bound the value function's overestimation in Markov decision "
     "processes."),
    ("federated", "Personalized training across hospitals without sharing patient records",
     "Clients keep their data on premise; a server aggregates model updates each round "
     "under differential privacy."),
])
def test_clear_papers_get_their_topic_first_without_categories(
        slug: str, title: str, abstract: str) -> None:
    assert tagger.guess_topics(title, abstract, (), ML)[0] == slug


def test_a_paper_that_never_says_a_keyword_is_filed_by_its_likeness() -> None:
    # No keyword of the NLP topic: the words cs.CL papers use (perplexity, corpus-free).
    topics = tagger.guess_topics(
        "Perplexity is not enough", "We study how perplexity on held-out text relates to "
        "downstream question answering accuracy across encoder and decoder transformers.",
        (), ML)
    assert "nlp" in topics or "llm" in topics


def test_a_listed_category_puts_its_topic_in() -> None:
    title, abstract = "Learning to fold towels", "A policy learned from demonstrations."
    assert "robotics" in tagger.guess_topics(title, abstract, ("cs.RO",), ML)


def test_the_example_cards_reach_the_target() -> None:
    cards = json.loads((FIXTURES / "topics" / "example_cards.json").read_text("utf-8"))
    pairs = [(tagger.guess_topics(c["title"], c["summary"], (), ML), c["topics"])
             for c in cards]
    assert micro_f1(pairs) >= 0.70


def test_arxiv_categories_agree_with_the_topics_and_about_two_topics_a_paper() -> None:
    weak = {"cs.CV": "vision", "eess.IV": "vision", "cs.CL": "nlp", "cs.RO": "robotics",
            "math.OC": "optimization", "stat.TH": "theory", "math.ST": "theory"}
    named = set(weak.values())
    papers = sample_papers()
    guesses = [tagger.guess_topics(p["title"], p["abstract"], (), ML) for p in papers]
    pairs = [([t for t in guess if t in named],
              [weak[c] for c in p["categories"] if c in weak])
             for guess, p in zip(guesses, papers, strict=True)]
    assert micro_f1(pairs) >= 0.55  # the keyword counter had 0.52
    assert 1.5 <= sum(map(len, guesses)) / len(guesses) <= 2.5


def test_every_paper_gets_one_to_three_known_topics_the_same_each_time() -> None:
    papers = sample_papers()[:60]
    first = [tagger.guess_topics(p["title"], p["abstract"], p["categories"], ML)
             for p in papers]
    tagger._model.cache_clear()  # made ready again, from scratch
    again = [tagger.guess_topics(p["title"], p["abstract"], p["categories"], ML)
             for p in papers]
    assert first == again
    for topics in first:
        assert 1 <= len(topics) <= MAX_TOPICS
        assert len(set(topics)) == len(topics)
        assert set(topics) <= set(ML.slugs)


def test_most_relevant_first() -> None:
    scores = tagger.topic_scores(OUTLIER_TITLE, OUTLIER_ABSTRACT, (), ML)
    topics = tagger.guess_topics(OUTLIER_TITLE, OUTLIER_ABSTRACT, (), ML)
    assert [scores[t] for t in topics] == sorted((scores[t] for t in topics), reverse=True)


@pytest.mark.parametrize(("title", "abstract"), [
    ("", ""), ("Untitled", "Nothing to see."), ("$$", "\\frac{1}{2} 42")])
def test_nothing_to_go_on_files_the_paper_under_the_fallback_topic(
        title: str, abstract: str) -> None:
    assert tagger.guess_topics(title, abstract, (), ML) == [ML.fallback_topic]
    assert tagger.guess_topics(title, abstract, (), BIOLOGY) == [BIOLOGY.fallback_topic]


def biorxiv_records() -> list[dict]:
    path = FIXTURES / "biorxiv" / "details_biorxiv_2026-09-23_2026-09-24_0.json"
    return json.loads(path.read_text("utf-8"))["collection"]


@pytest.mark.parametrize(("start", "slug"), [
    ("Long-read sequencing resolves", "genomics"),
    ("Mitochondrial fission sites", "cell-biology"),
])
def test_a_biorxiv_paper_gets_biology_topics(start: str, slug: str) -> None:
    record = next(r for r in biorxiv_records() if r["title"].startswith(start))
    assert tagger.guess_topics(record["title"], record["abstract"], (), BIOLOGY)[0] == slug
    # bioRxiv's category names a topic as arXiv's do
    topics = tagger.guess_topics(record["title"], record["abstract"], (record["category"],),
                                 BIOLOGY)
    assert topics[0] == slug and set(topics) <= set(BIOLOGY.slugs)


def test_a_taxonomy_of_one_topic_gets_it_every_time() -> None:
    only = parse('[[topics]]\nslug = "all"\nname = "Everything"\n'
                 'description = "Every paper."\n')
    for title, abstract in (("", ""), (OUTLIER_TITLE, OUTLIER_ABSTRACT)):
        assert tagger.guess_topics(title, abstract, (), only) == ["all"]


def test_a_taxonomy_of_words_the_ml_listings_never_use() -> None:
    kitchen = parse("""
fallback_topic = "baking"
[[topics]]
slug = "baking"
name = "Baking"
description = "Bread, sourdough starters, croissants and ovens."
keywords = ["sourdough", "croissant", "bread"]
[[topics]]
slug = "fermentation"
name = "Fermentation"
description = "Kimchi, kombucha, miso and lacto-fermented vegetables."
keywords = ["kimchi", "kombucha", "miso", "ferment"]
""")
    assert tagger.guess_topics("Kombucha at home", "A guide to fermenting tea.", (),
                               kitchen) == ["fermentation"]
    assert tagger.guess_topics("Better sourdough", "Starters, flour and bread crumb.", (),
                               kitchen)[0] == "baking"
    assert tagger.guess_topics("Graph neural networks", "Message passing.", (),
                               kitchen) == ["baking"]  # nothing of either: the fallback


def test_the_word_statistics_stay_small() -> None:
    path = Path(tagger.__file__).with_name(tagger.DATA_FILE)
    assert path.stat().st_size < 1_000_000
