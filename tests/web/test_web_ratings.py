"""Rating links and the reader's interests, through the Flask test client, on SQLite and
Postgres, with a real arXiv API document's twenty papers (one day, so all of "the last
week") and their offline vectors.

A rating link opened records nothing (mail scanners open every link); its button records,
changes or clears, and the answer shows what changed and the week's papers the reader's
new model ranks highest. Tokens we did not make for that reader and paper are 404s, and so
are a deleted reader's, alike (which ids exist stays hidden); no token text is a 500. The
paper page has buttons only with the reader's token for that paper. A description and
liked papers typed at sign-up wait for the confirmation, then shape the model; the manage
page edits them, lists the ratings and changes or clears them.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from newsletter import db
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.ingest.store import ingest_files
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import MAX_ROW_ID, LinkHolder, Links
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.relevance import train
from newsletter.relevance.embed import embed_pending
from newsletter.relevance.tables import Rating, ReaderModelRow
from newsletter.subscriptions import privacy
from newsletter.web import create_app
from tests.relevance.test_learn import ON_TIDE, TIDE, asking
from tests.support import web
from tests.support.arxiv_server import API_DOCUMENT, ArxivAPI
from tests.support.web import csrf_token, link, outbox, session_form_token, subscribe

# The shared web fixtures, collected by pytest from this module's names.
app, client, web_settings = web.app, web.client, web.web_settings

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Papers of the API document: language diffusion models as associative memories (close to
# TIDE, the distillation of diffusion language models), and a THz oscillator survey.
DIFFUSION_MEMORY, OSCILLATORS = "2604.26841", "2604.26903"


@pytest.fixture
def papers(engine: Engine, web_settings: Settings) -> dict[str, int]:
    """The day's papers with their vectors: arXiv id -> paper id."""
    ingest_files(engine, [API_DOCUMENT])
    embed_pending(engine, web_settings)
    return _paper_ids(engine)


def _paper_ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {p.arxiv_id: p.id for p in session.exec(select(Paper)) if p.arxiv_id and p.id}


def _reader(engine: Engine, email: str = "reader@example.org") -> LinkHolder:
    with db.transaction(engine) as session:
        row = subs.ensure(session, email, datetime.now(UTC))
        subs.update_preferences(session, row, reader_input.parse_preferences(["llm"]))
        subs.confirm_now(session, row, "admin", reader_input.Client())
        assert row.id is not None
        return LinkHolder(row.id, row.link_key)


def _links(web_settings: Settings) -> Links:
    return Links.from_settings(web_settings)


def _rate_path(web_settings: Settings, holder: LinkHolder, paper_id: int,
               direction: str) -> str:
    return f"/rate/{_links(web_settings).rate_token(holder, paper_id)}/{direction}"


def _manage_path(web_settings: Settings, holder: LinkHolder) -> str:
    return f"/manage/{_links(web_settings).manage_token(holder)}"


def _ratings(engine: Engine) -> dict[tuple[int, int], int]:
    with Session(engine) as session:
        return {(r.subscriber_id, r.paper_id): r.value for r in session.exec(select(Rating))}


def _has_model(engine: Engine, holder: LinkHolder) -> bool:
    with Session(engine) as session:
        return session.get(ReaderModelRow, holder.subscriber_id) is not None


def _press(client: FlaskClient, path: str):  # type: ignore[no-untyped-def]
    """Open a rating link, then press its button, as a person does."""
    return client.post(path, data={"csrf_token": csrf_token(client, path)})


def _text(answer) -> str:  # type: ignore[no-untyped-def]
    return answer.get_data(as_text=True)


def _title(engine: Engine, arxiv_id: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Paper.title).where(Paper.arxiv_id == arxiv_id)).one()


def _rate_tokens(html: str) -> list[str]:
    return re.findall(r'action="/rate/([^/"]+)/up"', html)


# ---------------------------------------------------------------- the rating link


def test_opening_a_rating_link_records_nothing(client: FlaskClient, web_settings: Settings,
                                               engine: Engine, papers: dict[str, int]) -> None:
    me = _reader(engine)
    for direction, button in (("up", "More like this"), ("down", "Less like this"),
                              ("clear", "Remove my rating")):
        path = _rate_path(web_settings, me, papers[TIDE], direction)
        page = client.get(path)
        assert page.status_code == 200
        body = _text(page)
        assert "Turning the TIDE" in body and "Nothing is recorded until" in body
        assert f'<form method="post" action="{path}">' in body and button in body
        assert page.headers["Cache-Control"] == "no-store"
        assert client.head(path).status_code == 200
    assert _ratings(engine) == {} and not _has_model(engine, me)


def test_the_button_rates_changes_and_clears(client: FlaskClient, web_settings: Settings,
                                             engine: Engine, papers: dict[str, int]) -> None:
    me = _reader(engine)
    up = _rate_path(web_settings, me, papers[TIDE], "up")
    answer = _press(client, up)
    assert answer.status_code == 200, _text(answer)
    body = _text(answer)
    assert "More like this: noted" in body
    assert "Before: <strong>no rating</strong>. Now: <strong>more like this</strong>" in body
    assert _ratings(engine) == {(me.subscriber_id, papers[TIDE]): 1}
    assert _has_model(engine, me)

    # Pressed twice (a reload, a double click): still one rating.
    assert _press(client, up).status_code == 200
    assert _ratings(engine) == {(me.subscriber_id, papers[TIDE]): 1}

    changed = _press(client, _rate_path(web_settings, me, papers[TIDE], "down"))
    assert "Before: <strong>more like this</strong>. Now: <strong>less like this</strong>" \
        in _text(changed)
    assert _ratings(engine) == {(me.subscriber_id, papers[TIDE]): -1}
    # The page offers the way back: the opposite rating and removing it.
    token = _links(web_settings).rate_token(me, papers[TIDE])
    assert f'action="/rate/{token}/clear"' in _text(changed)
    assert f'action="/rate/{token}/up"' in _text(changed)

    cleared = _press(client, _rate_path(web_settings, me, papers[TIDE], "clear"))
    assert "Rating removed" in _text(cleared) and "by your topics alone" in _text(cleared)
    assert _ratings(engine) == {} and not _has_model(engine, me)


def test_the_answer_shows_the_weeks_papers_the_new_model_ranks_highest(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me = _reader(engine)
    body = _text(_press(client, _rate_path(web_settings, me, papers[TIDE], "up")))
    similar = body.split('id="similar-heading"', 1)[1]
    titles = re.findall(r'<h3 id="p-[^"]+"><a href="[^"]+">([^<]+)</a>', similar)
    assert len(titles) == 5
    assert _title(engine, TIDE) not in titles  # rated already
    assert _title(engine, DIFFUSION_MEMORY) in titles
    assert _title(engine, OSCILLATORS) not in titles
    # Each suggestion carries its own working rating buttons.
    tokens = _rate_tokens(similar)
    assert len(tokens) == 5
    _press(client, f"/rate/{tokens[0]}/down")
    assert len(_ratings(engine)) == 2


def test_without_vectors_the_answer_says_so(client: FlaskClient, web_settings: Settings,
                                            engine: Engine) -> None:
    ingest_files(engine, [API_DOCUMENT])  # no embedding run yet
    ids = _paper_ids(engine)
    me = _reader(engine)
    body = _text(_press(client, _rate_path(web_settings, me, ids[TIDE], "up")))
    assert "More like this: noted" in body
    assert "cannot be compared yet: they have no vectors" in body


def test_wrong_words_tampered_tokens_and_other_papers_are_404s(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me, other = _reader(engine), _reader(engine, "other@example.org")
    token = _links(web_settings).rate_token(me, papers[TIDE])
    reader_id, paper_id, mac = token.split(".")
    flipped = mac[:3] + ("A" if mac[3] != "A" else "B") + mac[3 + 1:]
    forged = [
        f"{reader_id}.{paper_id}.{flipped}", token[:-1], token + "x", token[:-5],
        f"{reader_id}.{papers[DIFFUSION_MEMORY]}.{mac}",  # another paper
        f"{other.subscriber_id}.{paper_id}.{mac}",  # another reader
        f"0{reader_id}.{paper_id}.{mac}", f"{reader_id}.{paper_id}.{mac}=",
        f"{MAX_ROW_ID + 1}.{paper_id}.{mac}", f"{reader_id}.{2**63}.{mac}", f"-1.{paper_id}.{mac}",
        f"{reader_id}.{paper_id}", "", "..", "a" * 500,
    ]
    csrf = session_form_token(client)
    for bad in forged:
        for direction in ("up", "down", "clear"):
            path = f"/rate/{bad}/{direction}"
            assert client.get(path).status_code == 404, path
            assert client.post(path, data={"csrf_token": csrf}).status_code == 404, path
    for word in ("sideways", "UP", "up/", ""):
        path = f"/rate/{token}/{word}"
        assert client.get(path).status_code == 404, path
        assert client.post(path, data={"csrf_token": csrf}).status_code == 404, path
    # A rating link opens no other page.
    assert client.get(f"/manage/{token}").status_code == 404
    assert _ratings(engine) == {}


def test_a_deleted_readers_links_are_gone(client: FlaskClient, web_settings: Settings,
                                          engine: Engine, papers: dict[str, int]) -> None:
    me = _reader(engine)
    up = _rate_path(web_settings, me, papers[TIDE], "up")
    form_token = csrf_token(client, up)
    with db.transaction(engine) as session:
        row = session.get(Subscriber, me.subscriber_id)
        assert row is not None
        privacy.erase(session, row)
    assert client.get(up).status_code == 404
    assert client.post(up, data={"csrf_token": form_token}).status_code == 404
    # A new reader later given the same id does not inherit the old links.
    with db.transaction(engine) as session:
        session.add(Subscriber(id=me.subscriber_id, email="new@example.org"))
    assert client.get(up).status_code == 404
    assert _ratings(engine) == {}


def test_a_forged_token_is_answered_alike_whether_its_reader_exists_or_not(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    # Issue 22, finding 11: a garbage MAC answered 404 for a real reader and 410 for a
    # missing one, so anyone could list which subscriber ids exist.
    me = _reader(engine)
    _reader(engine, "other@example.org")
    missing = me.subscriber_id + 1000
    garbage = "A" * 16
    csrf = session_form_token(client)
    answers = {}
    for reader_id in (me.subscriber_id, missing):
        path = f"/rate/{reader_id}.{papers[TIDE]}.{garbage}/up"
        got, sent = client.get(path), client.post(path, data={"csrf_token": csrf})
        answers[reader_id] = [(a.status_code, _text(a)) for a in (got, sent)]
    assert answers[me.subscriber_id] == answers[missing]
    assert {status for status, _ in answers[missing]} == {404}
    # A deleted reader's genuine link cannot be told from a forged one either.
    up = _rate_path(web_settings, me, papers[TIDE], "up")
    with db.transaction(engine) as session:
        row = session.get(Subscriber, me.subscriber_id)
        assert row is not None
        privacy.erase(session, row)
    assert [(a.status_code, _text(a)) for a in (
        client.get(up), client.post(up, data={"csrf_token": csrf}))] == answers[missing]
    assert _ratings(engine) == {}


def test_the_button_needs_the_pages_form_token(web_settings: Settings, engine: Engine,
                                               papers: dict[str, int]) -> None:
    me = _reader(engine)
    up = _rate_path(web_settings, me, papers[TIDE], "up")
    stranger = create_app(web_settings, engine=engine).test_client()
    assert stranger.post(up).status_code == 400
    assert _ratings(engine) == {}


@PROPERTY
@given(token=st.text(alphabet=string.printable + "é\u0661.-_", max_size=120),
       word=st.sampled_from(["up", "down", "clear", "x"]))
def test_any_token_text_is_a_404_never_a_500(client: FlaskClient, engine: Engine,
                                             token: str, word: str) -> None:
    csrf = session_form_token(client)
    token = token.replace("/", "").replace("?", "").replace("#", "").strip() or "x"
    path = f"/rate/{quote(token, safe='')}/{word}"
    assert client.get(path).status_code == 404, path
    assert client.post(path, data={"csrf_token": csrf}).status_code == 404, path


@PROPERTY
@given(reader_id=st.integers(min_value=-(2**70), max_value=2**70),
       paper_id=st.integers(min_value=-(2**70), max_value=2**70))
def test_validly_signed_tokens_naming_impossible_rows_are_404s(
        client: FlaskClient, web_settings: Settings, reader_id: int, paper_id: int) -> None:
    # The forger holds the key (as anyone does in dev mode): only the ids are wrong.
    token = _links(web_settings).rate_token(LinkHolder(reader_id, "key"), paper_id)
    # No such reader in an empty database: whether the id could exist or not, a 404.
    assert client.get(f"/rate/{token}/up").status_code == 404


# ---------------------------------------------------------------- the paper page


def test_the_paper_page_has_buttons_only_with_the_readers_token_for_it(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me = _reader(engine)
    links = _links(web_settings)
    page = f"/papers/{TIDE}"
    token = links.rate_token(me, papers[TIDE])

    plain = client.get(page)
    assert plain.status_code == 200 and "More like this" not in _text(plain)
    assert "Set-Cookie" not in plain.headers

    rated = client.get(f"{page}?rate={token}")
    assert rated.status_code == 200
    assert f'action="/rate/{token}/up"' in _text(rated)
    assert f'action="/rate/{token}/down"' in _text(rated)
    assert rated.headers["Cache-Control"] == "no-store"
    answer = client.post(f"/rate/{token}/up", data={"csrf_token": csrf_token(
        client, f"{page}?rate={token}")})
    assert answer.status_code == 200
    assert "You rated this paper more like this." in _text(client.get(f"{page}?rate={token}"))

    other_paper = links.rate_token(me, papers[DIFFUSION_MEMORY])
    for bad in (other_paper, token[:-1], "nonsense", ""):
        shown = client.get(f"{page}?rate={quote(bad)}")
        assert shown.status_code == 200 and "More like this" not in _text(shown), bad
        assert "Less like this" not in _text(shown), bad


# ---------------------------------------------------------------- interests at sign-up


def _confirm_from_mail(client: FlaskClient, web_settings: Settings) -> str:
    confirm = link(outbox(web_settings)[-1], "confirm")
    answer = client.post(confirm, data={"csrf_token": csrf_token(client, confirm)})
    assert answer.status_code == 200, _text(answer)
    return link(outbox(web_settings)[-1], "manage")


def _preferences(engine: Engine, email: str) -> Preferences:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None
        return subs.preferences_of(session, row)


def _model_of(engine: Engine, email: str) -> ReaderModelRow | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None
        return session.get(ReaderModelRow, row.id)


def test_interests_given_at_sign_up_wait_for_the_confirmation_then_shape_the_model(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    answer = subscribe(client, "reader@example.com", description=ON_TIDE,
                       liked_papers=f"https://arxiv.org/abs/{TIDE}v2\n{DIFFUSION_MEMORY}")
    assert answer.status_code == 200
    pending = _preferences(engine, "reader@example.com")
    assert pending.description is None and pending.liked_papers == []
    assert _model_of(engine, "reader@example.com") is None

    manage = _confirm_from_mail(client, web_settings)
    confirmed = _preferences(engine, "reader@example.com")
    assert confirmed.description == ON_TIDE
    assert confirmed.liked_papers == [TIDE, DIFFUSION_MEMORY]
    learned = _model_of(engine, "reader@example.com")
    assert learned is not None and learned.ratings == 0
    page = _text(client.get(manage))
    assert ON_TIDE in page and f"{TIDE}\n{DIFFUSION_MEMORY}</textarea>" in page


def test_liked_papers_we_lack_are_fetched_after_the_confirmation_not_in_it(
        web_settings: Settings, engine: Engine) -> None:
    with ArxivAPI() as arxiv:
        settings = asking(web_settings, arxiv)
        client = create_app(settings, engine=engine).test_client()
        subscribe(client, "reader@example.com", liked_papers=f"{TIDE} 2604.99999")
        manage = _confirm_from_mail(client, web_settings)
        # The confirmation answered without waiting on arXiv (3 s between calls).
        assert arxiv.requests == [] and _paper_ids(engine) == {}
        assert f"arXiv has not given us {TIDE}, 2604.99999 yet" in _text(client.get(manage))

        train.embed_and_retrain(engine, settings)  # the sweep after cards
        [asked] = arxiv.requests
    assert asked.query["id_list"] == [f"{TIDE},2604.99999"]
    assert TIDE in _paper_ids(engine)
    assert _model_of(engine, "reader@example.com") is not None
    page = _text(client.get(manage))
    assert "arXiv has not given us 2604.99999 yet" in page


def test_a_sign_up_with_bad_interests_is_refused_with_what_was_typed(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    long = "sparse attention " * 40
    answer = subscribe(client, "reader@example.com", description=long,
                       liked_papers="2401.12345\nnot-a-paper")
    assert answer.status_code == 400
    body = _text(answer)
    assert "At most 500 characters" in body and "&#39;not-a-paper&#39; is not an arXiv id" in body
    assert long.strip() in body and "2401.12345\nnot-a-paper</textarea>" in body
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Subscriber)).one() == 0
    assert outbox(web_settings) == []


# ---------------------------------------------------------------- the manage page


def _save(client: FlaskClient, manage: str, **fields: str):  # type: ignore[no-untyped-def]
    data = {"csrf_token": csrf_token(client, manage), "topics": ["llm"], "frequency": "daily",
            "max_papers": "10", **fields}
    return client.post(manage, data=data)


def test_the_manage_page_saves_and_checks_the_interests(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me = _reader(engine)
    manage = _manage_path(web_settings, me)
    page = _text(client.get(manage))
    assert 'name="description"' in page and 'name="liked_papers"' in page
    assert not _has_model(engine, me)

    saved = _save(client, manage, description=ON_TIDE, liked_papers=TIDE)
    assert saved.status_code == 303
    prefs = _preferences(engine, "reader@example.org")
    assert (prefs.description, prefs.liked_papers) == (ON_TIDE, [TIDE])
    assert _has_model(engine, me)

    refused = _save(client, manage, description="x" * 501, liked_papers=f"{TIDE}, what")
    assert refused.status_code == 400
    body = _text(refused)
    assert "Nothing was saved" in body and "At most 500 characters (this has 501)" in body
    assert "&#39;what&#39; is not an arXiv id" in body
    assert "x" * 501 in body and f"{TIDE}, what</textarea>" in body
    assert _preferences(engine, "reader@example.org").description == ON_TIDE

    # Emptied: no description, no likes, nothing to learn from.
    assert _save(client, manage, description="", liked_papers="").status_code == 303
    prefs = _preferences(engine, "reader@example.org")
    assert (prefs.description, prefs.liked_papers) == (None, [])
    assert not _has_model(engine, me)


def test_liked_papers_arxiv_cannot_give_are_kept_and_shown(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me = _reader(engine)
    manage = _manage_path(web_settings, me)
    # web_settings point the arXiv API at a closed port: it cannot be asked.
    assert _save(client, manage, liked_papers=f"{TIDE}\n2501.00001").status_code == 303
    assert _preferences(engine, "reader@example.org").liked_papers == [TIDE, "2501.00001"]
    page = _text(client.get(manage))
    assert "arXiv has not given us 2501.00001 yet" in page
    assert _has_model(engine, me)  # trained on the liked paper we have


def test_the_manage_page_lists_changes_and_clears_ratings(
        client: FlaskClient, web_settings: Settings, engine: Engine,
        papers: dict[str, int]) -> None:
    me = _reader(engine)
    manage = _manage_path(web_settings, me)
    assert "You have not rated any paper yet" in _text(client.get(manage))
    _press(client, _rate_path(web_settings, me, papers[TIDE], "up"))
    _press(client, _rate_path(web_settings, me, papers[OSCILLATORS], "down"))

    page = _text(client.get(manage))
    listed = page.split('id="ratings-heading"', 1)[1]
    assert listed.index(_title(engine, OSCILLATORS)) < listed.index(_title(engine, TIDE))
    assert f'value="{TIDE}=down"' in listed and f'value="{TIDE}=up"' not in listed
    assert f'value="{OSCILLATORS}=up"' in listed

    form = csrf_token(client, manage)
    changed = client.post(f"{manage}/ratings", data={"csrf_token": form,
                                                     "rating": f"{TIDE}=down"})
    assert changed.status_code == 303 and changed.headers["Location"].endswith(
        f"{manage}?rated=1#ratings")
    assert _ratings(engine)[(me.subscriber_id, papers[TIDE])] == -1
    assert "Rating saved" in _text(client.get(f"{manage}?rated=1"))

    client.post(f"{manage}/ratings", data={"csrf_token": form, "rating": f"{TIDE}=clear"})
    client.post(f"{manage}/ratings", data={"csrf_token": form,
                                           "rating": f"{OSCILLATORS}=clear"})
    assert _ratings(engine) == {} and not _has_model(engine, me)

    for bad in ("", f"{TIDE}=sideways", "2604.99999=up", f"{TIDE}", "=up", "x" * 5000):
        answer = client.post(f"{manage}/ratings", data={"csrf_token": form, "rating": bad})
        assert answer.status_code == 400, bad
    assert client.post(f"{manage}/ratings").status_code == 400  # no form token
    forged = client.post("/manage/forged/ratings", data={"csrf_token": form,
                                                         "rating": f"{TIDE}=up"})
    assert forged.status_code == 404
    assert _ratings(engine) == {}


@PROPERTY
@given(description=st.text(max_size=700), liked=st.text(max_size=300))
def test_hostile_interests_never_break_a_page(client: FlaskClient, web_settings: Settings,
                                             engine: Engine, description: str,
                                             liked: str) -> None:
    with db.transaction(engine) as session:
        existing = subs.find_by_email(session, "hostile@example.org")
        if existing is not None:
            privacy.erase(session, existing)
    me = _reader(engine, "hostile@example.org")
    manage = _manage_path(web_settings, me)
    answer = _save(client, manage, description=description, liked_papers=liked)
    assert answer.status_code in (303, 400)
    assert client.get(manage).status_code == 200
    signed = subscribe(client, "someone@example.org", description=description,
                       liked_papers=liked)
    assert signed.status_code in (200, 400)
