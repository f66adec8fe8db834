"""Issue 24's promise on one installation, as beat runs it: a French reader in Montreal and
an English reader in Tokyo, cards written by the OpenAI stand-in (through the real
`openai` client) and translated once, and `newsletter send --due --now` as a fake clock
ticking as beat does across the end of daylight saving time in North America (02:00 on
Sunday 1 November 2026, when Montreal goes from UTC-4 to UTC-5).

Each gets their digest at 07:00 of their own day, in their own language, and nothing
twice. On SQLite and on Postgres."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from click.testing import CliRunner, Result
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from newsletter.cards.card import Card
from newsletter.cards.translation_table import CardTranslation
from newsletter.cli import main
from newsletter.config import Settings
from newsletter.delivery import Delivery, SentPaper
from newsletter.ingest.paper import Paper
from newsletter.web import create_app
from tests.conftest import ARXIV_FIXTURES
from tests.support.openai_server import OpenAIServer, translate_text

FEEDS = sorted(ARXIV_FIXTURES.glob("rss_cs.*_2026-04-27.xml"))
# The announcement days the papers are moved to: Saturday, the Sunday DST ends, Monday.
DAYS = (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2))
MONTREAL, TOKYO = "lecteur@example.org", "reader@example.jp"
TOPICS = "llm,nlp,efficient-ml,rl,theory,optimization,vision,generative"


def cli(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


def digests(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def test_a_french_reader_in_montreal_and_an_english_one_in_tokyo_each_at_their_hour_once(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    with OpenAIServer() as server:
        env = {"DATABASE_URL": database_url, "OUTBOX_DIR": str(outbox),
               "ARXIV_API_URL": "http://127.0.0.1:9/api/query",
               "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url,
               "OPENAI_MODEL": "gpt-4o-mini", "CARD_LANGUAGES": "en,fr,de,ja",
               "BASE_URL": "http://paperwire.test"}
        cli(env, "ingest", "--file", *map(str, FEEDS))
        with engine.begin() as conn:
            ids = conn.execute(text("SELECT id FROM papers ORDER BY id")).scalars().all()
            for n, paper_id in enumerate(ids):
                conn.execute(text("UPDATE papers SET announced_on = :day, revised_on = NULL "
                                  "WHERE id = :id"), {"day": DAYS[n % 3], "id": paper_id})
        cli(env, "subscribers", "add", MONTREAL, "--topics", TOPICS, "--confirmed",
            "--language", "fr", "--time-zone", "America/Montreal", "--hour", "7")
        cli(env, "subscribers", "add", TOKYO, "--topics", TOPICS, "--confirmed",
            "--time-zone", "Asia/Tokyo", "--hour", "7")
        cli(env, "summarize")
        # Cards once per paper; translations once per paper into French, the one language
        # in use beyond English (nobody reads German or Japanese).
        with Session(engine) as session:
            cards = {c.paper_id: c for c in session.exec(select(Card)) if c.status == "ok"}
            translated = session.exec(select(CardTranslation)).all()
        assert len(cards) == len(ids) == len(server.card_calls)
        assert sorted((t.paper_id, t.language) for t in translated) == \
            sorted((paper_id, "fr") for paper_id in cards)
        assert len(server.translation_calls) == len(cards)
        assert all(t.status == "ok" and t.input_tokens > 0 for t in translated)

    # Both joined (and chose) on the Friday, before anything was due.
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscribers SET confirmed_at = :at"),
                     {"at": datetime(2026, 10, 30, tzinfo=UTC)})
        conn.execute(text("UPDATE preferences SET updated_at = :at"),
                     {"at": datetime(2026, 10, 30)})

    # Beat's 15-minute ticks for two hours around each 07:00 (either side of the change,
    # in either zone), an hourly tick between: every tick in between a send must find
    # nobody due, and an hour's gap proves nothing is left for a later tick to make up.
    start, end = datetime(2026, 10, 30, 12, tzinfo=UTC), datetime(2026, 11, 3, 2, tzinfo=UTC)
    near = [datetime(2026, 10, 30, 22, tzinfo=UTC) + timedelta(days=d) for d in range(4)] \
        + [datetime(2026, 10, 31, 11, tzinfo=UTC) + timedelta(days=d, hours=h)
           for d in range(3) for h in (0, 1)]
    ticks = sorted({start + timedelta(minutes=15 * n) for n in range(4 * 24 * 4)
                    if start + timedelta(minutes=15 * n) <= end
                    and (n % 4 == 0 or any(abs(start + timedelta(minutes=15 * n) - t)
                                           <= timedelta(hours=1) for t in near))})
    sent_at: dict[str, list[datetime]] = {MONTREAL: [], TOKYO: []}
    for at in ticks:
        before = len(digests(outbox))
        cli(env, "send", "--due", "--now", at.isoformat().replace("+00:00", "Z"))
        for message in digests(outbox)[before:]:
            sent_at[str(message["To"])].append(at)

    # 07:00 in Montreal: 11:00 UTC on Saturday (EDT), 12:00 UTC from Sunday on (EST).
    assert sent_at[MONTREAL] == [datetime(2026, 10, 31, 11, tzinfo=UTC),
                                 datetime(2026, 11, 1, 12, tzinfo=UTC),
                                 datetime(2026, 11, 2, 12, tzinfo=UTC)]
    # 07:00 in Tokyo is 22:00 UTC the day before; its Tuesday finds nothing new.
    assert sent_at[TOKYO] == [datetime(2026, 10, 30, 22, tzinfo=UTC),
                              datetime(2026, 10, 31, 22, tzinfo=UTC),
                              datetime(2026, 11, 1, 22, tzinfo=UTC)]
    with Session(engine) as session:
        sent = session.exec(select(SentPaper, Delivery)
                            .join(Delivery, Delivery.id == SentPaper.delivery_id)).all()
        papers = {p.id: p for p in session.exec(select(Paper))}
    carried = [(d.subscriber_id, s.paper_id) for s, d in sent]
    assert len(carried) == len(set(carried)), "a paper reached a reader twice"

    mails = digests(outbox)
    french = [m for m in mails if m["To"] == MONTREAL]
    english = [m for m in mails if m["To"] == TOKYO]
    saturday = french[0]
    assert saturday["Content-Language"] == "fr"
    text_fr = body(saturday)
    assert "samedi 31 octobre 2026" in text_fr
    assert re.fullmatch(r"\d+ articles? sur .+ · Paperwire, sam\. 31 oct\.",
                        str(saturday["Subject"])), saturday["Subject"]
    # Its cards are the French translations; its titles stay as the authors wrote them.
    shown = [p for p in papers.values() if p.title in text_fr]
    assert shown
    for paper in shown:
        assert paper.id is not None
        point = cards[paper.id].key_points[0]
        assert translate_text(point, "fr")[:60] in " ".join(text_fr.split())
        assert point[:60] not in " ".join(text_fr.split())
    assert "Saturday" not in text_fr and "Why:" not in text_fr

    tokyo_first = english[0]
    text_en = body(tokyo_first)
    assert "Saturday, 31 October 2026" in text_en
    assert tokyo_first["Content-Language"] == "en"
    for paper in (p for p in papers.values() if p.title in text_en):
        assert paper.id is not None
        assert cards[paper.id].key_points[0][:60] in " ".join(text_en.split())

    # Its links lead to French pages: the reader's own pages speak their language,
    # whatever the browser asks.
    manage = re.search(r"https?://\S+/manage/\S+", text_fr)
    assert manage, text_fr
    site = create_app(Settings(database_url=database_url, base_url="http://paperwire.test",
                               card_languages=("en", "fr", "de", "ja")),
                      engine=engine).test_client()
    page = site.get(urlsplit(manage.group()).path,
                    headers={"Accept-Language": "en-US,en;q=0.9"})
    assert page.status_code == 200
    assert '<html lang="fr"' in page.get_data(as_text=True)
