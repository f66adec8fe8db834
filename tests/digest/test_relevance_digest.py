"""A reader's model in their digest: the CLI contract, topics as a prior, the why-line, the
"help tune" picks and the rating links the email carries.

Real arXiv listings (tests/fixtures/arxiv, 2026-04-27: nine papers, two of them on anomaly
detection), offline cards and offline vectors, through the same commands an operator runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter import delivery
from newsletter.cards.summarize import summarize_pending
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest import rank
from newsletter.digest.selection import PaperIndex, candidate, interests
from newsletter.ingest.parse import parse_feed
from newsletter.ingest.store import ingest_files, store_entries
from newsletter.mail.message import Addressee, compose
from newsletter.mail.render import render_digest
from newsletter.relevance.embed import embed_pending
from tests.conftest import ARXIV_FIXTURES
from tests.support.web import mails_in, text_of

DAY = "2026-04-27"
ATHLETICS = "Performance Anomaly Detection in Athletics"
CLINICAL = "Conditional anomaly detection using soft harmonic functions"
DESCRIBE = ("anomaly detection in athletics performance data, and conditional anomaly "
            "detection for clinical alerting")


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"mail_backend": "file", "outbox_dir": tmp_path / "out",
                                       "base_url": "http://paperwire.test"})


@pytest.fixture
def day(engine: Engine, settings: Settings) -> None:
    ingest_files(engine, sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml")))
    summarize_pending(engine, settings)
    embed_pending(engine, settings)


def run(settings: Settings, *args: str) -> Result:
    env = {"DATABASE_URL": settings.database_url, "PAPERWIRE_DEV": "1",
           "OUTBOX_DIR": str(settings.outbox_dir), "MAIL_BACKEND": "file",
           "BASE_URL": settings.base_url, "ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def preview(settings: Settings, email: str) -> list[dict[str, object]]:
    answer = run(settings, "preview", email, "--date", DAY, "--json")
    assert answer.exit_code == 0, answer.output
    return json.loads(answer.output)


def digest_text(engine: Engine, settings: Settings, email: str) -> str:
    """The text part of the reader's digest of DAY, as the send would mail it."""
    digest = delivery.preview(engine, settings, email, day=date.fromisoformat(DAY))
    assert digest is not None, f"{email} would get no digest"
    return digest.text


def _key_of(engine: Engine, title: str) -> str:
    with Session(engine) as session:
        from sqlmodel import select

        from newsletter.ingest.paper import Paper
        return session.exec(select(Paper.key).where(Paper.title.startswith(title))).one()


def test_a_description_brings_papers_no_topic_names(engine: Engine, settings: Settings,
                                                     day: None) -> None:
    # Federated learning names none of the day's papers: by topics alone, nothing at all.
    assert run(settings, "subscribers", "add", "plain@example.org", "--topics", "federated",
               "--confirmed").exit_code == 0
    assert preview(settings, "plain@example.org") == []

    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "federated",
               "--describe", DESCRIBE, "--confirmed").exit_code == 0
    picks = preview(settings, "reader@example.org")
    keys = [p["arxiv_id"] for p in picks]
    assert _key_of(engine, ATHLETICS) in keys and _key_of(engine, CLINICAL) in keys
    # The contract: rank order, each with a 0-100 score and its reasons.
    assert [p["score"] for p in picks] == sorted((p["score"] for p in picks), reverse=True)
    first = next(p for p in picks if p["arxiv_id"] == _key_of(engine, ATHLETICS))
    assert 0 <= first["score"] <= 100
    assert "matches your description" in first["reasons"]


def test_ratings_change_the_next_preview(engine: Engine, settings: Settings, day: None) -> None:
    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "federated",
               "--describe", DESCRIBE, "--confirmed").exit_code == 0
    athletics, clinical = _key_of(engine, ATHLETICS), _key_of(engine, CLINICAL)
    before = {p["arxiv_id"]: p for p in preview(settings, "reader@example.org")}
    assert athletics in before

    rated = run(settings, "rate", "reader@example.org", f"{athletics}=down",
                f"{clinical}=up")
    assert rated.exit_code == 0, rated.output
    after = {p["arxiv_id"]: p for p in preview(settings, "reader@example.org")}
    assert after.get(athletics, {"score": -1})["score"] < before[athletics]["score"]
    assert after[clinical]["score"] >= before[clinical]["score"]

    bad = run(settings, "rate", "reader@example.org", f"{athletics}=sideways")
    assert bad.exit_code == 2


def test_a_paper_rated_up_is_not_said_to_be_like_itself(engine: Engine, settings: Settings,
                                                        day: None) -> None:
    # Rated on the site before the digest went out, it can be in that day's digest.
    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "federated",
               "--describe", DESCRIBE, "--confirmed").exit_code == 0
    athletics = _key_of(engine, ATHLETICS)
    assert run(settings, "rate", "reader@example.org", f"{athletics}=up").exit_code == 0
    picks = {p["arxiv_id"]: p for p in preview(settings, "reader@example.org")}
    assert athletics in picks
    assert not any(ATHLETICS in reason for reason in picks[athletics]["reasons"])


def test_exclude_keywords_still_exclude(engine: Engine, settings: Settings, day: None) -> None:
    with Session(engine) as session:
        from newsletter.readers import reader_input
        from newsletter.readers import subscriber as subs
        row = subs.ensure(session, "reader@example.org", subs._utcnow())
        subs.update_preferences(session, row, reader_input.parse_preferences(
            ["federated"], exclude_keywords="clinical"))
        subs.confirm_now(session, row, "admin", reader_input.Client())
        session.commit()
    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "federated",
               "--describe", DESCRIBE).exit_code == 0
    keys = [p["arxiv_id"] for p in preview(settings, "reader@example.org")]
    assert _key_of(engine, CLINICAL) not in keys


def test_a_young_model_adds_at_most_two_labelled_papers_to_tune_it() -> None:
    import numpy as np

    papers = [candidate(i, f"2604.0000{i}", f"Paper {i}", "abstract", ["A B"], ["llm"])
              for i in range(1, 8)]
    index = PaperIndex(papers)
    chances = np.array([0.95, 0.9, 0.5, 0.45, 0.1, 0.05, np.nan], dtype=np.float32)
    young = rank.Learned(affinity=chances, ratings=3)
    picked = rank.select(index, interests(["robotics"], max_papers=2), young)
    assert [p.candidate.paper_id for p in picked.picks[:2]] == [1, 2]
    tuning = picked.picks[2:]
    assert [p.candidate.paper_id for p in tuning] == [3, 4]  # nearest 0.5
    assert all(p.reasons == (rank.TUNING_REASON,) for p in tuning)
    reader = Addressee("a@x.org", 1, picked, "https://x.org/m", "https://x.org/u",
                       "https://x.org/v")
    text = render_digest(compose([reader], day=date.fromisoformat(DAY), frequency="daily",
                                 site_url="https://x.org").recipients[0].data).text
    assert text.count("Why: a rating here helps tune your digest") == 2
    seasoned = rank.Learned(affinity=chances, ratings=rank.FEW_RATINGS)
    assert len(rank.select(index, interests(["robotics"], max_papers=2), seasoned).picks) == 2


def test_a_named_author_or_keyword_outweighs_the_models_doubt() -> None:
    import numpy as np

    papers = [candidate(1, "2604.00001", "Planning with world models", "abstract", ["X Y"], []),
              candidate(2, "2604.00002", "Reward shaping", "abstract", ["X Y"], []),
              candidate(3, "2604.00003", "Offline RL", "abstract", ["X Y"], []),
              candidate(4, "2604.00004", "Graph kernels", "abstract", ["Ada Lovelace"], []),
              candidate(5, "2604.00005", "Sparse attention at scale", "abstract", ["X Y"], [])]
    index = PaperIndex(papers)
    # The model likes the first three and doubts the ones the reader named.
    learned = rank.Learned(affinity=np.array([0.6, 0.55, 0.5, 0.1, 0.1], dtype=np.float32),
                           ratings=rank.FEW_RATINGS)

    def top(**named: list[str]) -> list[int]:
        picked = rank.select(index, interests(["rl"], max_papers=3, **named), learned).picks
        return [p.candidate.paper_id for p in picked]

    assert top() == [1, 2, 3]
    assert top(authors=["Ada Lovelace"])[0] == 4
    assert top(include_keywords=["sparse attention"])[0] == 5
    picked = rank.select(index, interests(["rl"], max_papers=3, authors=["Ada Lovelace"]),
                         learned).picks[0]
    assert picked.reasons == ("author: Ada Lovelace",)


def test_every_paper_in_the_mailed_digest_can_be_rated(engine: Engine, settings: Settings,
                                                       day: None) -> None:
    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "llm",
               "--confirmed").exit_code == 0
    report = delivery.send_edition(engine, settings, day=date.fromisoformat(DAY))
    assert report.sent == 1
    [mail] = mails_in(settings.outbox_dir)
    text = text_of(mail)
    papers = text.count("   Read more: ")
    up = re.findall(r"More like this: (\S+/rate/\S+/up)", text)
    down = re.findall(r"Less like this: (\S+/rate/\S+/down)", text)
    assert papers and len(up) == len(down) == papers
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert html.count("/up\">") >= papers and "More like this" in html


def test_the_why_line_names_the_liked_paper_a_pick_resembles_until_it_is_rated_down(
    engine: Engine, settings: Settings, day: None
) -> None:
    # An earlier paper on the same work as ATHLETICS (its abstract, another title): the
    # reader likes it, so the why-line of ATHLETICS names it.
    entry = next(e for f in sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml"))
                 for e in parse_feed(f.read_bytes()).entries if e.title.startswith(ATHLETICS))
    earlier = "Finding outliers in track and field results"
    with Session(engine) as session:
        store_entries(session, [dataclasses.replace(
            entry, key="2604.90001", arxiv_id="2604.90001", title=earlier,
            announced_on=date(2026, 4, 20))])
        session.commit()
    embed_pending(engine, settings)
    assert run(settings, "subscribers", "add", "reader@example.org", "--topics", "federated",
               "--describe", DESCRIBE, "--like", "2604.90001", "--confirmed").exit_code == 0

    picks = {p["arxiv_id"]: p for p in preview(settings, "reader@example.org")}
    # The JSON keeps the reason as it is stored; the digest says it as a reader would.
    assert f"like “{earlier}” you liked" in picks[_key_of(engine, ATHLETICS)]["reasons"]
    text = digest_text(engine, settings, "reader@example.org")
    assert f"similar to “{earlier}”, which you said you like" in text
    assert "like “" not in text

    # Rated up as well, it is said so: the reader did that, not only list it.
    assert run(settings, "rate", "reader@example.org", "2604.90001=up").exit_code == 0
    text = digest_text(engine, settings, "reader@example.org")
    assert f"similar to “{earlier}”, which you rated up" in text
    assert "which you said you like" not in text

    # Ratings say more than likes: rated down, the liked paper is no longer held up.
    assert run(settings, "rate", "reader@example.org", "2604.90001=down").exit_code == 0
    picks = {p["arxiv_id"]: p for p in preview(settings, "reader@example.org")}
    assert not any(earlier in reason for p in picks.values() for reason in p["reasons"])


def test_the_why_line_names_a_favourite_only_beside_the_papers_closest_to_it_in_any_space(
) -> None:
    import numpy as np

    from newsletter.digest import scores
    rng = np.random.default_rng(7)
    edition = 200  # its 0.5% closest to a favourite: the one closest
    everyone = np.ones(edition, dtype=bool)

    def named(closeness: np.ndarray, present: np.ndarray = everyone) -> list[int]:
        title_for = scores.resembles(scores.standing_out(closeness[:, None], present), [0],
                                     ["Earlier paper"])
        return [i for i in range(len(closeness)) if title_for(i) == "Earlier paper"]

    # A dense space (MiniLM's): every paper is 0.25-0.45 from the favourite. Only the one
    # that stands out is "like" it, not every paper above a fixed cosine.
    dense = rng.uniform(0.25, 0.45, edition)
    dense[[7, 8]] = 0.8, 0.5
    assert named(dense) == [7]
    # The offline space: most papers share no word with the favourite. The one at 0.09,
    # far below a near-duplicate's cosine, is still the paper most like it.
    sparse = np.where(rng.random(edition) < 0.7, 0.0, rng.uniform(0.0, 0.02, edition))
    sparse[3] = 0.09
    assert named(sparse) == [3]
    # Papers without a vector neither count nor get named.
    no_vector = everyone.copy()
    no_vector[3] = False
    assert 3 not in named(sparse, no_vector)
    # Nothing in common is no resemblance, even in an edition of three.
    assert named(np.zeros(3), np.ones(3, dtype=bool)) == []
