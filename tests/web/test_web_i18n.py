"""The site in the reader's language: English and French.

Who chooses, in order: a reader's stored language on their own pages (the signed links in
their mail), the visitor's switch (the `lang` cookie), the browser's Accept-Language, and
English. Each test reads a page as a person would and asserts what they would notice: the
words, `<html lang>`, the dates and the plurals, the choice kept in the database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from newsletter import db
from newsletter.admin import accounts, audit
from newsletter.cards.card import Card
from newsletter.cards.translation import translation_source_hash
from newsletter.cards.translation_table import CardTranslation
from newsletter.config import Settings
from newsletter.ingest.paper import Paper
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import LinkHolder, Links
from newsletter.readers.tables import Preferences
from newsletter.web import create_app
from tests.support import web
from tests.support.axe import axe_context, blocking_violations
from tests.support.reader_site import seed
from tests.support.web import csrf_token, live_site, subscribe

DAY = date(2026, 9, 24)  # a Thursday
FRENCH = {"Accept-Language": "fr"}
ENGLISH = {"Accept-Language": "en"}


@pytest.fixture
def web_settings(settings: Settings, tmp_path: Path) -> Settings:
    # As tests/support/web.py, with French and German offered to readers: French has
    # pages, German has cards only (its pages are English).
    return settings.model_copy(update={"outbox_dir": tmp_path / "outbox",
                                       "signup_rate_limit": "1000/minute",
                                       "base_url": "http://paperwire.test",
                                       "arxiv_api_url": "http://127.0.0.1:9/api/query",
                                       "card_languages": ("en", "fr", "de")})


app, client = web.app, web.client


def _html(answer) -> str:  # type: ignore[no-untyped-def]
    return answer.get_data(as_text=True)


def _lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]*)">', html)
    assert found, html[:200]
    return found.group(1)


def _selected_language(html: str) -> str | None:
    select = re.search(r'<select id="language" name="language".*?</select>', html, re.S)
    assert select, "no language select on the page"
    chosen = re.search(r'<option value="([^"]+)"[^>]*selected', select.group(0))
    return chosen.group(1) if chosen else None


def _paper(key: str, **extra: object) -> Paper:
    values: dict[str, object] = {
        "key": key, "arxiv_id": key, "title": f"Paper {key}", "abstract": "We study. " * 5,
        "authors": ["Ada Lovelace"], "categories": ["cs.LG"], "announce_type": "new",
        "announced_on": DAY, "abs_url": f"https://arxiv.org/abs/{key}"}
    values.update(extra)
    return Paper(**values)  # type: ignore[arg-type]


@pytest.fixture
def papers(engine: Engine) -> None:
    """Three new papers on DAY (one with a card), one revised that day, one the day
    before: plurals and singulars on the front page and /days."""
    with db.transaction(engine) as session:
        first = _paper("2609.00001")
        session.add_all([first, _paper("2609.00002"), _paper("2609.00003"),
                         _paper("2609.00004", announce_type="replace", version=2,
                                announced_on=DAY - timedelta(days=30), revised_on=DAY),
                         _paper("2609.00005", announced_on=DAY - timedelta(days=1))])
        session.flush()
        session.add(Card(paper_id=first.id, topics=["llm"], key_points=["A point."],
                         summary="S.", methodology="M.", results="R.", implications="I.",
                         source="llm", model="m", prompt_version="v1", text_hash="h",
                         status="ok"))


def _reader(engine: Engine, language: str | None, email: str = "lecteur@example.org"
            ) -> LinkHolder:
    with db.transaction(engine) as session:
        row = subs.ensure(session, email, datetime.now(UTC))
        subs.update_preferences(session, row, reader_input.parse_preferences(
            ["llm"], language=language, languages=("en", "fr", "de")))
        subs.confirm_now(session, row, "admin", reader_input.Client())
        assert row.id is not None
        return LinkHolder(row.id, row.link_key)


def _links(web_settings: Settings, engine: Engine) -> Links:
    return Links.from_settings(web_settings, engine)


def _stored_language(engine: Engine, email: str) -> str | None:
    with Session(engine) as session:
        row = subs.find_by_email(session, email)
        assert row is not None
        prefs = session.get(Preferences, row.id)
        return prefs.language if prefs else None


# ---------------------------------------------------------------- anonymous pages


def test_a_french_browser_gets_french_pages(client: FlaskClient, papers: None) -> None:
    front = client.get("/", headers=FRENCH)
    html = _html(front)
    assert front.status_code == 200 and _lang(html) == "fr"
    # The header, the form, the topics (names and descriptions), the weekdays, the regions.
    for said in ("Jours précédents", "Adresse e-mail", "S\u2019abonner",
                 "Jour et heure d\u2019envoi", "Grands modèles de langage",
                 "Entraînement, prompts, raisonnement", ">Lundi</option>",
                 '<optgroup label="Afrique">', "Lire la suite"):
        assert said in html, said
    assert "Past days" not in html and "Email address" not in html
    # The front page is cached per process: the English one is still English.
    english = _html(client.get("/", headers=ENGLISH))
    assert _lang(english) == "en" and "Past days" in english and "Jours précédents" not in english
    assert ">Monday</option>" in english and "Large Language Models" in english
    # A proxy keeping the page must keep one per language.
    assert {"Accept-Language", "Cookie"} <= set(front.vary)
    # The stylesheet is the same in every language: one copy for all.
    assert "Cookie" not in client.get("/static/style.css").vary
    assert front.headers["Cache-Control"] == "public, max-age=30"


@pytest.mark.parametrize("header,expected", [
    ("fr", "fr"), ("fr-CA", "fr"), ("fr-FR,fr;q=0.9,en;q=0.8", "fr"),
    # werkzeug's best_match answers "en" here: an exact "en" beats Canadian French.
    ("fr-CA,en;q=0.8", "fr"),
    ("en", "en"), ("en-GB,fr;q=0.5", "en"), ("de", "en"), ("de,fr;q=0.5", "fr"),
    ("fr;q=0,en", "en"), ("*", "en"), ("", "en"), ("xx-YY", "en"),
    ("x" * 5000, "en"), (",;;q=,fr;q=abc,", "en")])
def test_accept_language_is_negotiated(client: FlaskClient, header: str, expected: str
                                       ) -> None:
    answer = client.get("/days", headers={"Accept-Language": header})
    assert answer.status_code == 200
    assert _lang(_html(answer)) == expected
    assert ("Jours précédents" in _html(answer)) == (expected == "fr")


def test_every_page_offers_the_switch(client: FlaskClient, papers: None) -> None:
    for path in ("/", "/days", f"/days/{DAY}", "/papers/2609.00001", "/no/such/page"):
        html = _html(client.get(path, headers=FRENCH))
        form = re.search(r'<form class="languages".*?</form>', html, re.S)
        assert form, path
        assert 'lang="fr" aria-current="true">Français<' in form.group(0), path
        assert '<button type="submit" name="lang" value="en" lang="en">English</button>' in \
            form.group(0), path


def test_the_switch_beats_accept_language(client: FlaskClient) -> None:
    switched = client.post("/language", data={"lang": "fr", "next": "/days?before=2026-09-24"},
                           headers=ENGLISH)
    assert switched.status_code == 303
    assert urlsplit(switched.headers["Location"]).path == "/days"
    assert urlsplit(switched.headers["Location"]).query == "before=2026-09-24"
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith("lang=fr;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Later pages, whatever the browser says.
    page = _html(client.get("/days", headers=ENGLISH))
    assert _lang(page) == "fr" and "Jours précédents" in page
    # And back to English, on a French browser.
    client.post("/language", data={"lang": "en", "next": "/"}, headers=FRENCH)
    page = _html(client.get("/days", headers=FRENCH))
    assert _lang(page) == "en" and "Past days" in page


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/path", "/\\evil.example", "\\\\evil.example",
    "http:/evil.example", "javascript:alert(1)", "evil.example", " /days",
    "/days\r\nSet-Cookie: a=b", "/" + "a" * 5000, ""])
def test_the_switch_returns_only_to_a_page_of_ours(client: FlaskClient, target: str) -> None:
    answer = client.post("/language", data={"lang": "fr", "next": target})
    assert answer.status_code == 303
    where = urlsplit(answer.headers["Location"])
    assert where.netloc in ("", "paperwire.test") and where.path == "/"
    assert "evil" not in answer.headers["Location"]


@pytest.mark.parametrize("value", ["../../etc/passwd", "x" * 10000, "fr\r\nSet-Cookie: a=b",
                                   "FR", "fr-CA", "de", "", "<script>"])
def test_a_hostile_language_falls_back_safely(client: FlaskClient, value: str) -> None:
    switched = client.post("/language", data={"lang": value, "next": "/days"})
    assert switched.status_code == 303 and "Set-Cookie" not in switched.headers
    # The same in a cookie a client wrote itself.
    client.set_cookie("lang", value[:4000])
    page = client.get("/days", headers=ENGLISH)
    assert page.status_code == 200 and _lang(_html(page)) == "en"
    assert "<script>" not in _html(page)


_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accept=_HEADER_TEXT, cookie=_HEADER_TEXT, lang=st.text(max_size=100),
       target=st.one_of(st.text(max_size=200), _HEADER_TEXT,
                        st.sampled_from(["//x.example", "/\\x.example", "/ok?a=1#f"])))
def test_no_language_input_breaks_a_page(client: FlaskClient, accept: str, cookie: str,
                                         lang: str, target: str) -> None:
    switched = client.post("/language", data={"lang": lang, "next": target})
    assert switched.status_code == 303
    where = urlsplit(switched.headers["Location"])
    assert where.netloc in ("", "paperwire.test") and where.path.startswith("/")
    assert not where.path.startswith("//")
    client.set_cookie("lang", cookie)
    page = client.get("/days", headers={"Accept-Language": accept})
    assert page.status_code == 200 and _lang(_html(page)) in ("en", "fr")


def test_a_card_language_without_pages_speaks_english(client: FlaskClient) -> None:
    # German is offered for cards; the site has no German pages, so the cookie is ignored.
    client.set_cookie("lang", "de")
    assert _lang(_html(client.get("/days", headers=ENGLISH))) == "en"


# ---------------------------------------------------------------- dates and plurals


def test_french_dates_and_plurals(client: FlaskClient, papers: None) -> None:
    front = _html(client.get("/", headers=FRENCH))
    assert "3 nouveaux articles le jeudi 24 septembre 2026" in front
    listing = _html(client.get("/days", headers=FRENCH))
    assert "jeudi 24 septembre 2026" in listing and "mercredi 23 septembre 2026" in listing
    assert "3 nouveaux articles, 1 révisé" in listing
    assert "1 nouvel article<" in listing
    day = _html(client.get(f"/days/{DAY}", headers=FRENCH))
    assert "<title>Articles du jeudi 24 septembre 2026 · Paperwire</title>" in day
    assert "3 nouveaux articles, 1 révisé." in day and "Révisés ce jour-là" in day
    # A Saturday: French says why, with its date.
    weekend = _html(client.get("/days/2026-09-26", headers=FRENCH))
    assert "le samedi 26 septembre 2026 (il n\u2019y a pas d\u2019annonce le week-end)" in weekend
    # English is unchanged.
    assert "3 new papers on Thursday, 24 September 2026" in _html(client.get("/"))


def test_zero_is_singular_in_french(app: Flask) -> None:
    template = app.jinja_env.from_string(
        "{% trans count=n %}{{ count }} new paper{% pluralize %}{{ count }} new papers"
        "{% endtrans %}")
    with app.test_request_context("/", headers=FRENCH):
        app.preprocess_request()
        assert [template.render(n=n) for n in (0, 1, 2)] == [
            "0 nouvel article", "1 nouvel article", "2 nouveaux articles"]
    with app.test_request_context("/", headers=ENGLISH):
        app.preprocess_request()
        assert [template.render(n=n) for n in (0, 1, 2)] == [
            "0 new papers", "1 new paper", "2 new papers"]


def test_a_card_in_french_or_said_to_be_english(client: FlaskClient, engine: Engine,
                                                papers: None) -> None:
    # 2609.00001 has an LLM card and no French translation yet: English words, said so.
    untranslated = _html(client.get("/papers/2609.00001", headers=FRENCH))
    note = "Ce résumé est en anglais\u00a0: il n\u2019est pas encore traduit en français."
    assert note in untranslated and '<p lang="en">S.</p>' in untranslated
    assert "<h2>Résumé</h2>" in untranslated and "Paper 2609.00001" in untranslated
    # Translated: French words under the same (untranslated) title, and no note.
    with db.transaction(engine) as session:
        card = session.exec(select(Card).where(Card.paper_id == 1)).one()
        session.add(CardTranslation(
            paper_id=1, language="fr", source_hash=translation_source_hash(card),
            key_points=["Un point."], summary="Le résumé.", methodology="La méthode.",
            results="Les résultats.", implications="La portée.", status="ok", model="m",
            prompt_version="t1"))
    translated = _html(client.get("/papers/2609.00001", headers=FRENCH))
    assert "<p>Le résumé.</p>" in translated and "Paper 2609.00001" in translated
    assert note not in translated
    day = _html(client.get(f"/days/{DAY}", headers=FRENCH))
    assert "<li>Un point.</li>" in day and note not in day
    # English readers get the English card, with no note.
    english = _html(client.get("/papers/2609.00001", headers=ENGLISH))
    assert "<p>S.</p>" in english and "Le résumé." not in english and "English" not in \
        english.split("<main")[1].split("</main>")[0]


# ---------------------------------------------------------------- the sign-up form


def test_a_refused_sign_up_is_explained_in_french(client: FlaskClient) -> None:
    refused = client.post("/subscribe", headers=FRENCH, data={
        "email": "not-an-address", "frequency": "daily", "language": "fr",
        "time_zone": "Europe/Atlantis"})
    html = _html(refused)
    assert refused.status_code == 400 and _lang(html) == "fr"
    assert "Veuillez corriger les champs signalés." in html
    assert "Cette adresse e-mail n\u2019est pas valide." in html
    assert "Choisissez au moins un thème." in html
    assert "Aucun fuseau horaire &#39;Europe/Atlantis&#39;" in html
    # The choice comes back as made.
    assert _selected_language(html) == "fr"


def test_a_refused_language_is_named(client: FlaskClient) -> None:
    refused = client.post("/subscribe", headers=ENGLISH, data={
        "email": "someone@example.org", "topics": ["llm"], "language": "../../x"})
    html = _html(refused)
    assert refused.status_code == 400
    assert "No language &#39;../../x&#39; here; choose one of en, fr, de." in html


def test_the_sign_up_offers_the_languages_by_their_own_names(client: FlaskClient) -> None:
    french = _html(client.get("/", headers=FRENCH))
    for code, name in (("en", "English"), ("fr", "Français"), ("de", "Deutsch")):
        assert f'<option value="{code}" lang="{code}"' in french and f">{name}</option>" in french
    # The page's own language first, if it is offered; English otherwise.
    assert _selected_language(french) == "fr"
    assert _selected_language(_html(client.get("/", headers={"Accept-Language": "es"}))) == "en"
    # The select has its label and its hint.
    assert '<label for="language">Langue de vos résumés, e-mails et pages</label>' in french
    assert 'aria-describedby="language-hint"' in french


def test_a_sign_up_keeps_its_language_through_the_confirmation(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    # An English browser picks French: the choice is the reader's, and wins from the link on.
    answer = subscribe(client, "lectrice@example.org", ("llm", "vision"), language="fr")
    assert answer.status_code == 200
    # The link the confirmation mail carries (made here: this test is about the site).
    with Session(engine) as session:
        row = subs.find_by_email(session, "lectrice@example.org")
        assert row is not None and row.id is not None and row.confirm_nonce
        token = _links(web_settings, engine).confirm_token(row.id, row.confirm_nonce)
    confirm = f"/confirm/{token}"
    page = _html(client.get(confirm, headers=ENGLISH))
    assert _lang(page) == "fr" and "Confirmez votre abonnement" in page
    assert "Grands modèles de langage, Vision par ordinateur" in page
    done = client.post(confirm, headers=ENGLISH,
                       data={"csrf_token": csrf_token(client, confirm)})
    assert done.status_code == 200 and "Votre abonnement est confirmé" in _html(done)
    assert _stored_language(engine, "lectrice@example.org") == "fr"


# ---------------------------------------------------------------- a reader's own pages


def test_a_french_reader_gets_their_pages_in_french(
        client: FlaskClient, web_settings: Settings, engine: Engine, papers: None) -> None:
    holder = _reader(engine, "fr")
    links = _links(web_settings, engine)
    manage = f"/manage/{links.manage_token(holder)}"
    with Session(engine) as session:
        paper_id = session.get(Paper, 1).id  # type: ignore[union-attr]
    pages = {
        manage: "Votre abonnement",
        f"{manage}/delete": "Supprimer vos données\u202f?",
        f"/unsubscribe/{links.unsubscribe_token(holder)}": "Ne plus envoyer la sélection",
        f"/rate/{links.rate_token(holder, paper_id)}/up": "Votre avis sur un article",
    }
    # Even from an English browser that switched to English.
    client.set_cookie("lang", "en")
    for path, said in pages.items():
        html = _html(client.get(path, headers=ENGLISH))
        assert _lang(html) == "fr" and said in html, path
    html = _html(client.get(manage, headers=ENGLISH))
    assert "statut\u00a0: <strong class=\"status status-confirmed\">confirmé</strong>" in html
    assert _selected_language(html) == "fr"
    # Someone else's forged link is no reader's: the visitor's language.
    forged = client.get(manage[:-3] + "AAA", headers=ENGLISH)
    assert forged.status_code == 404 and _lang(_html(forged)) == "en"


def test_a_reader_who_never_chose_gets_the_negotiated_language(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    holder = _reader(engine, None)
    manage = f"/manage/{_links(web_settings, engine).manage_token(holder)}"
    assert _lang(_html(client.get(manage, headers=FRENCH))) == "fr"
    assert _lang(_html(client.get(manage, headers=ENGLISH))) == "en"


def test_the_manage_page_explains_mistakes_in_the_readers_language(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    holder = _reader(engine, "fr")
    manage = f"/manage/{_links(web_settings, engine).manage_token(holder)}"
    refused = client.post(manage, headers=ENGLISH, data={
        "csrf_token": csrf_token(client, manage), "topics": ["llm"], "max_papers": "99",
        "authors": "x" * 200, "language": "de"})
    html = _html(refused)
    # Nothing was saved: still French, and the choice made comes back to be saved again.
    assert refused.status_code == 400 and _lang(html) == "fr"
    assert _selected_language(html) == "de"
    assert _stored_language(engine, "lecteur@example.org") == "fr"
    assert "Rien n\u2019a été enregistré" in html
    assert "Choisissez un nombre entre 1 et 50." in html
    assert "Chaque auteur doit être du texte simple de moins de 100 caractères." in html


def test_the_manage_page_changes_the_language(
        client: FlaskClient, web_settings: Settings, engine: Engine) -> None:
    holder = _reader(engine, "fr")
    manage = f"/manage/{_links(web_settings, engine).manage_token(holder)}"
    saved = client.post(manage, data={"csrf_token": csrf_token(client, manage),
                                      "topics": ["llm"], "frequency": "daily",
                                      "language": "de"})
    assert saved.status_code == 303
    assert _stored_language(engine, "lecteur@example.org") == "de"
    # German cards, English pages (the site has no German), the choice shown as made.
    html = _html(client.get(saved.headers["Location"], headers=FRENCH))
    assert _lang(html) == "en" and "Saved." in html
    assert _selected_language(html) == "de"
    # A form without the select (an older page) keeps the stored choice.
    client.post(manage, data={"csrf_token": csrf_token(client, manage), "topics": ["llm"]})
    assert _stored_language(engine, "lecteur@example.org") == "de"


# ---------------------------------------------------------------- errors, admin


def test_error_pages_are_translated(client: FlaskClient) -> None:
    missing = client.get("/no/such/page", headers=FRENCH)
    assert missing.status_code == 404 and "Introuvable" in _html(missing)
    assert "Il n\u2019y a rien à cette adresse." in _html(missing)
    expired = client.get("/manage/not-a-token", headers=FRENCH)
    assert expired.status_code == 404 and "Ce lien n\u2019est pas valide" in _html(expired)


def test_the_admin_pages_stay_english(client: FlaskClient, engine: Engine) -> None:
    # The operator's desk is not translated: not even the topics' names on a French browser.
    holder = _reader(engine, "fr")
    with db.transaction(engine) as session:
        accounts.add(session, "ada@example.org", "correct horse battery staple", audit.CLI)
    signed = client.post("/admin/login", headers=FRENCH, data={
        "csrf_token": csrf_token(client, "/admin/login"), "email": "ada@example.org",
        "password": "correct horse battery staple"})
    assert signed.status_code == 303
    page = _html(client.get(f"/admin/subscribers/{holder.subscriber_id}", headers=FRENCH))
    assert _lang(page) == "en" and "Large Language Models" in page
    assert "Grands modèles de langage" not in page


def test_a_site_offering_only_english_shows_no_language_select(
        web_settings: Settings, engine: Engine) -> None:
    english_only = create_app(web_settings.model_copy(update={"card_languages": ("en",)}),
                              engine=engine).test_client()
    html = _html(english_only.get("/", headers=FRENCH))
    assert _lang(html) == "fr" and 'name="language"' not in html


# ---------------------------------------------------------------- accessibility, in French


def test_french_pages_have_no_serious_accessibility_violation(tmp_path: Path) -> None:
    """axe-core in Chromium, as tests/web/test_web_accessibility.py runs it, on the pages
    the language changes most: the French front page with its sign-up form (language
    select included), the same form refused with French errors, a reader's French manage
    page, and the switch back to English."""
    url = f"sqlite:///{tmp_path / 'paperwire.db'}"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        settings = Settings(database_url=url, secret_key="i18n-site", dev_mode=True,
                            openai_api_key=None, mail_backend="file",
                            outbox_dir=tmp_path / "outbox", signup_rate_limit="1000/minute",
                            arxiv_api_url="http://127.0.0.1:9/api/query",
                            card_languages=("en", "fr", "de"))
        with live_site(settings, engine) as site, axe_context() as context:
            pages = seed(engine, site)
            page = context.new_page()
            page.set_extra_http_headers(FRENCH)
            found: dict[str, list[str]] = {}

            answer = page.goto(site.base_url + "/")
            assert answer is not None and answer.status == 200
            assert page.get_attribute("html", "lang") == "fr"
            assert page.get_by_label("Langue de vos résumés, e-mails et pages").is_visible()
            found["front page"] = blocking_violations(page)

            page.get_by_role("button", name="S\u2019abonner", exact=True).click()
            page.get_by_text("Veuillez corriger les champs signalés.").wait_for()
            found["sign-up refused"] = blocking_violations(page)

            answer = page.goto(site.base_url + pages.manage)
            assert answer is not None and answer.status == 200
            page.get_by_role("heading", name="Votre abonnement").wait_for()
            found["manage"] = blocking_violations(page)

            page.get_by_role("button", name="English", exact=True).click()
            page.get_by_role("heading", name="Your subscription").wait_for()
            assert page.get_attribute("html", "lang") == "en"
            found["manage, switched to English"] = blocking_violations(page)
    finally:
        engine.dispose()
    violations = {name: lines for name, lines in found.items() if lines}
    assert not violations, "\n".join(f"{name}: {line}" for name, lines in violations.items()
                                     for line in lines)


def test_a_french_request_leaves_its_thread_speaking_english(client: FlaskClient,
                                                             papers: None) -> None:
    # What the thread builds next (a mail outside a request, the next test) must not
    # speak the last visitor's language.
    from newsletter import i18n

    assert _lang(_html(client.get("/", headers=FRENCH))) == "fr"
    assert i18n.current() == "en"
    assert i18n.ngettext("%(num)d paper", "%(num)d papers", 3) == "3 papers"
