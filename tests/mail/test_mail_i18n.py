"""Every mail a reader gets, in their language: French for a French reader, English for an
English one, and English mail with German cards for a German reader (German has no
catalog of its own: it is a card language only).

Built by the product's own code (the mail services, compose, the senders, the SendGrid
sender against the stand-in) and read as a reader would: subject, text and HTML.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from sqlmodel import select as query

from newsletter import db, i18n
from newsletter.config import Settings
from newsletter.digest.selection import Candidate, Interests, Selection, candidate, headline, select
from newsletter.mail.message import DATA_LIMIT, TIGHTER, Addressee, compose
from newsletter.mail.render import digest_template, render_digest
from newsletter.mail.senders import FileSender, Message, OneByOne, to_mime
from newsletter.mail.sendgrid import SendGridSender
from newsletter.readers import reader_input
from newsletter.readers import subscriber as subs
from newsletter.readers.links import Links
from newsletter.readers.reader_input import Client, PreferenceValues
from newsletter.readers.tables import Preferences, Subscriber
from newsletter.subscriptions import services, signup
from newsletter.subscriptions.mail_queue import MailJob
from tests.mail.test_mail_standards import SPAM_LIMIT, _spamassassin, markup, refuse_noting
from tests.support.axe import axe_context, blocking_violations
from tests.support.sendgrid_server import SendGridServer

SITE = "https://paperwire.example.org"
DAY = date(2026, 12, 5)  # a Saturday
KEY = "SG.test-key"
FROM = "Paperwire <digest@example.org>"


def paper(i: int, *, language: str = "en", untranslated: bool = False,
          topics: tuple[str, ...] = ("llm",)) -> Candidate:
    made = candidate(i, f"2612.{i:05d}", f"Sparse attention for long contexts, part {i}",
                     "We study sparse attention.", ["Ada Lovelace", "Alan Turing"],
                     list(topics), ["It halves the memory of the KV cache.",
                                    "It keeps accuracy on long-context benchmarks."],
                     card_source="llm")
    return dataclasses.replace(made, card_language=language, untranslated=untranslated)


def reader(email: str, papers: list[Candidate], language: str = "en",
           wanted: Interests | None = None) -> Addressee:
    chosen = select(papers, wanted or Interests(topics=("llm",), max_papers=20))
    return Addressee(email, 1, chosen, f"{SITE}/manage/T", f"{SITE}/unsubscribe/T",
                     f"{SITE}/digest/T", rate_tokens=(), language=language)


def one(addressee: Addressee, frequency: str = "daily"):  # type: ignore[no-untyped-def]
    (recipient,) = compose([addressee], day=DAY, frequency=frequency, site_url=SITE).recipients
    return recipient, render_digest(recipient.data, recipient.language)


# -- the digest -------------------------------------------------------------------------------


def test_a_french_readers_digest_is_french_from_subject_to_footer() -> None:
    recipient, digest = one(reader("marie@example.org",
                                   [paper(i, language="fr") for i in range(1, 4)], "fr"))

    assert recipient.language == "fr" and recipient.headers["Content-Language"] == "fr"
    assert digest.subject == "3 articles sur Grands modèles de langage · Paperwire, sam. 5 déc."
    assert "samedi 5 décembre 2026" in digest.text and "Saturday" not in digest.text
    assert "Pourquoi\u00a0: Grands modèles de langage" in digest.text
    assert "Vous recevez cette sélection quotidienne" in digest.text
    assert "Se désabonner\u00a0: https://paperwire.example.org/unsubscribe/T" in digest.text
    assert markup(digest.html).html.get("lang") == "fr"
    html = digest.html
    for word in ("Voir dans le navigateur", "Lire la suite", "Gérer les thèmes",
                 "Se désabonner"):
        assert word in html, word
    assert re.search(r"Pertinence \d+/100", html)
    for english in ("View in browser", "Read more", "Manage topics", "Unsubscribe", "Why:",
                    "You get this"):
        assert english not in html and english not in digest.text, english
    # The cards are in French: no notice, no mark.
    assert "anglais" not in digest.text


def test_an_english_readers_digest_is_as_it_was() -> None:
    recipient, digest = one(reader("ada@example.org", [paper(i) for i in range(1, 4)]))

    assert recipient.language == "en"
    assert digest.subject == "3 papers on Large Language Models · Paperwire, Sat 5 Dec"
    assert digest.text.startswith("PAPERWIRE · Saturday, 5 December 2026\n")
    assert "Why: Large Language Models" in digest.text
    assert "You get this daily digest because you subscribed at" in digest.text
    assert markup(digest.html).html.get("lang") == "en"
    assert "Summar" not in digest.text  # no notice, no mark


@pytest.mark.parametrize(("count", "english", "french"), [
    (0, "0 new papers for you", "0 nouvel article pour vous"),
    (1, "1 paper on Large Language Models", "1 article sur Grands modèles de langage"),
    (3, "3 papers on Large Language Models", "3 articles sur Grands modèles de langage"),
])
def test_the_headline_counts_as_each_language_does(count: int, english: str,
                                                   french: str) -> None:
    chosen = (select([paper(i) for i in range(1, count + 1)], Interests(topics=("llm",)))
              if count else Selection(picks=(), more=0))
    assert headline(chosen) == english
    with i18n.using("fr"):
        assert headline(chosen) == french


def test_a_french_digest_says_how_many_more_and_its_preheader_in_french() -> None:
    papers = [paper(i, language="fr") for i in range(1, 6)]
    recipient, digest = one(reader("marie@example.org", papers, "fr",
                                   Interests(topics=("llm",), max_papers=3)))
    assert recipient.data["ml"] == "…et 2 autres sur le site"
    assert recipient.data["pre"].endswith("— et 2 autres")
    assert "…et 2 autres sur le site" in digest.html
    assert digest.subject.startswith("5 articles sur")


def test_a_weekly_french_digest_says_hebdomadaire() -> None:
    _, digest = one(reader("marie@example.org", [paper(1, language="fr")], "fr"), "weekly")
    assert "Vous recevez cette sélection hebdomadaire" in digest.text
    assert digest.subject.startswith("1 article sur")


def test_a_german_reader_reads_english_mail_with_german_cards_and_a_mark_where_one_is_missing(
) -> None:
    papers = [paper(1, language="de"), paper(2, untranslated=True)]
    recipient, digest = one(reader("hans@example.org", papers, "de"))

    assert recipient.language == "en"  # German has no catalog: English mail
    assert recipient.headers["Content-Language"] == "en"
    assert digest.subject.startswith("2 papers on Large Language Models")
    assert markup(digest.html).html.get("lang") == "en"
    marked = [p for p in recipient.data["p"] if p.get("ut")]
    assert [p["k"] for p in marked] == ["2612.00002"]
    assert digest.text.count("Summary in English: no German translation yet") == 1
    assert "Summary in English: no German translation yet" in digest.html
    assert "Summaries are in English on this installation" not in digest.text


def test_when_no_card_is_in_the_readers_language_one_notice_replaces_the_marks() -> None:
    papers = [paper(i, untranslated=True) for i in range(1, 4)]
    recipient, digest = one(reader("marie@example.org", papers, "fr"))

    assert recipient.data["en"] == 1 and "cl" not in recipient.data
    assert not any(p.get("ut") for p in recipient.data["p"])
    assert digest.text.count("Sur ce site, les résumés sont en anglais.") == 1
    assert "pas encore de traduction" not in digest.text
    # The same for a German reader, in English.
    _, german = one(reader("hans@example.org", papers, "de"))
    assert german.text.count("Summaries are in English on this installation.") == 1


def test_a_french_reader_whose_card_is_missing_sees_it_named_in_french() -> None:
    papers = [paper(1, language="fr"), paper(2, untranslated=True)]
    _, digest = one(reader("marie@example.org", papers, "fr"))
    assert digest.text.count("Résumé en anglais\u00a0: pas encore de traduction en français") == 1


def test_twenty_french_papers_still_fit_sendgrids_data_cap() -> None:
    long_points = tuple("Une phrase assez longue, accentuée et détaillée " * 6
                        for _ in range(4))
    papers = [dataclasses.replace(paper(i, language="fr"), key_points=long_points,
                                  title="Écrire l\u2019attention éparse pour les contextes longs, "
                                        f"sans perte de précision, partie {i}")
              for i in range(1, 21)]
    tokens = tuple("r" * 22 for _ in range(20))
    chosen = select(papers, Interests(topics=("llm",), max_papers=20))
    french = Addressee("marie@example.org", 1, chosen, f"{SITE}/manage/{'m' * 60}",
                       f"{SITE}/unsubscribe/{'u' * 60}", f"{SITE}/digest/{'v' * 60}",
                       rate_tokens=tokens, language="fr")
    (recipient,) = compose([french], day=DAY, frequency="weekly", site_url=SITE).recipients
    assert len(recipient.data["p"]) == 20
    assert recipient.data_bytes <= DATA_LIMIT
    # Clipped to fit, the way an English digest is: at most the tightest detail's points.
    assert len(recipient.data["p"][0]["kp"]) >= 1 and all(
        len(p["kp"]) >= TIGHTER.key_points for p in recipient.data["p"])


def test_the_file_sender_renders_each_reader_in_their_language(tmp_path: Path) -> None:
    batch = compose([reader("marie@example.org", [paper(1, language="fr")], "fr"),
                     reader("ada@example.org", [paper(1)])],
                    day=DAY, frequency="daily", site_url=SITE)
    sent = OneByOne(FileSender(tmp_path, FROM)).send_batch(batch)
    assert sent.accepted == ("marie@example.org", "ada@example.org")
    subjects = {}
    for path in tmp_path.glob("*.eml"):
        mime = message_from_bytes(path.read_bytes(), policy=default)
        subjects[str(mime["To"])] = (str(mime["Subject"]), str(mime["Content-Language"]))
        assert mime.get_body(("plain",)) is not None and mime.get_body(("html",)) is not None
    assert subjects == {
        "marie@example.org": ("1 article sur Grands modèles de langage · Paperwire, sam. 5 déc.",
                              "fr"),
        "ada@example.org": ("1 paper on Large Language Models · Paperwire, Sat 5 Dec", "en")}


# -- SendGrid: one template per language, requests grouped by language ------------------------


def test_sendgrid_gets_one_template_per_language_and_requests_grouped_by_language() -> None:
    papers = [paper(1, language="fr"), paper(2, language="fr")]
    english = [paper(1), paper(2)]
    addressees = [reader("ada@example.org", english),
                  reader("marie@example.org", papers, "fr"),
                  reader("hans@example.org", english, "de"),
                  reader("luc@example.org", papers, "fr")]
    batch = compose(addressees, day=DAY, frequency="daily", site_url=SITE)
    with SendGridServer(api_key=KEY) as sg:
        sender = SendGridSender(KEY, FROM, host=sg.url, sleep=lambda _s: None)
        result = sender.send_batch(batch)

        assert set(result.accepted) == {a.email for a in addressees} and result.error is None
        by_name = {t.name: t for t in sg.templates.values()}
        assert set(by_name) == {"paperwire-digest", "paperwire-digest-fr"}
        # One request per language, each naming its language's template.
        carried = {r.payload["template_id"]: sorted(p["to"][0]["email"]
                                                     for p in r.payload["personalizations"])
                   for r in sg.requests}
        assert carried == {
            by_name["paperwire-digest"].id: ["ada@example.org", "hans@example.org"],
            by_name["paperwire-digest-fr"].id: ["luc@example.org", "marie@example.org"]}
        (marie,) = sg.messages_for("marie@example.org")
        assert marie.subject.startswith("2 articles sur Grands modèles de langage")
        assert "Lire la suite" in (marie.html or "") and 'lang="fr"' in (marie.html or "")
        (hans,) = sg.messages_for("hans@example.org")
        assert "Read more" in (hans.html or "") and "Lire la suite" not in (hans.html or "")
        assert by_name["paperwire-digest-fr"].active is not None
        assert (by_name["paperwire-digest-fr"].active.html_content
                == digest_template("fr").html)


def test_a_missing_french_template_with_sync_off_holds_back_only_the_french_readers() -> None:
    batch = compose([reader("ada@example.org", [paper(1)]),
                     reader("marie@example.org", [paper(1, language="fr")], "fr")],
                    day=DAY, frequency="daily", site_url=SITE)
    with SendGridServer(api_key=KEY) as sg:
        SendGridSender(KEY, FROM, host=sg.url, sleep=lambda _s: None).sync()  # English only
        strict = SendGridSender(KEY, FROM, host=sg.url, sync_template=False,
                                sleep=lambda _s: None)
        strict.prepare()  # the English template is current: the send may go on
        result = strict.send_batch(batch)
    assert result.accepted == ("ada@example.org",) and result.rejected == ()
    assert "paperwire-digest-fr" in (result.error or "")


# -- the one-off mails ------------------------------------------------------------------------


LINKS = Links("k" * 32, SITE)


def _subscriber() -> Subscriber:
    return Subscriber(id=7, email="marie@example.org", confirm_nonce="n" * 16,
                      status="confirmed")


@pytest.mark.parametrize("language", ["fr", "en", "de"])
def test_the_confirmation_welcome_and_reminder_speak_the_readers_language(
        language: str) -> None:
    row = _subscriber()
    choices = PreferenceValues(topics=("llm", "efficient-ml"), frequency="daily",
                               language=language)
    prefs = Preferences(subscriber_id=7, topics=["llm"], frequency="weekly",
                        language=language)
    confirmation = services.confirmation_message(LINKS, row, choices)
    welcome = services.welcome_message(LINKS, row, prefs)
    reminder = services.already_subscribed_message(LINKS, row, language)
    # The text parts wrap at 78 characters: read them as one line.
    confirmed, welcomed, reminded = (" ".join(m.text.split())
                                     for m in (confirmation, welcome, reminder))
    if language == "fr":
        assert confirmation.subject == "Confirmez votre abonnement à Paperwire"
        assert "une sélection quotidienne" in confirmed
        assert "Grands modèles de langage" in confirmed
        assert "expire dans 3 jours" in confirmed
        assert welcome.subject == "Bienvenue sur Paperwire"
        assert "Votre première sélection hebdomadaire" in welcomed
        assert reminder.subject == "Cette adresse est déjà abonnée à Paperwire"
        assert "rien n\u2019a changé" in reminded
        expected_lang = "fr"
    else:  # English, and German, which has no catalog
        assert confirmation.subject == "Confirm your Paperwire subscription"
        assert "receive a daily digest" in confirmed
        assert "expires in 3 days" in confirmed
        assert welcome.subject == "Welcome to Paperwire"
        assert "Your first weekly digest" in welcomed
        assert reminder.subject == "You already subscribe to Paperwire"
        expected_lang = "en"
    for message in (confirmation, welcome, reminder):
        assert markup(message.html).html.get("lang") == expected_lang
        assert message.headers["Content-Language"] == expected_lang


def test_a_pending_french_sign_up_is_confirmed_in_french_and_welcomed_in_french(
        settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """The language comes from the sign-up's waiting choices, then from the preferences."""
    svc = services.Services.build(settings.model_copy(update={
        "outbox_dir": tmp_path / "outbox", "signup_rate_limit": "1000/minute",
        "card_languages": ("en", "fr")}), engine)
    signup.sign_up(svc, "marie@example.org", ["llm"], "daily", "", Client("198.51.100.1"),
                   language="fr")
    with Session(engine) as session:
        row = session.exec(query(Subscriber)).one()
        assert subs.requested_choices(row) is not None  # pending: the choices wait
        nonce, sid = row.confirm_nonce, row.id
    assert sid is not None
    job = MailJob(kind="confirmation", subscriber_id=sid, nonce=nonce, topics=("llm",),
                  frequency="daily")
    message = services._job_message(svc, job)
    assert message is not None and message.subject == "Confirmez votre abonnement à Paperwire"


# -- the standards, in French -----------------------------------------------------------------


def _raw(message: Message) -> bytes:
    return to_mime(message, FROM).as_bytes()


def _french_mails() -> dict[str, bytes]:
    recipient, digest = one(reader("marie@example.org",
                                   [paper(i, language="fr", topics=("llm", "efficient-ml"))
                                    for i in range(1, 4)], "fr"))
    headers = {"List-Unsubscribe": f"<{SITE}/unsubscribe/T>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
               "List-Id": "Paperwire <paperwire.paperwire.example.org>"}
    confirmation = services.confirmation_message(
        LINKS, _subscriber(), PreferenceValues(topics=("llm",), frequency="daily",
                                               language="fr"))
    return {"digest": _raw(Message(recipient.to, digest.subject, digest.html, digest.text,
                                   headers)),
            "confirmation": _raw(confirmation)}


@pytest.mark.parametrize("kind", ["digest", "confirmation"])
def test_spamassassin_scores_the_french_mails_as_low_as_the_english(kind: str,
                                                                   tmp_path: Path) -> None:
    score, rules = _spamassassin(_french_mails()[kind], tmp_path)
    assert score <= SPAM_LIMIT, f"the French {kind} scores {score}: " + "; ".join(rules)


def test_axe_finds_nothing_serious_in_the_french_mails() -> None:
    found = {}
    with axe_context(width=600, height=900) as browser:
        for kind, raw in _french_mails().items():
            html = message_from_bytes(raw, policy=default).get_body(("html",)).get_content()  # type: ignore[union-attr]
            page = browser.new_page()
            try:
                page.route("**/*", refuse_noting([]))
                page.set_content(html, wait_until="load")
                assert page.locator("html").get_attribute("lang") == "fr"
                found[kind] = blocking_violations(page)
            finally:
                page.close()
    assert found == {"digest": [], "confirmation": []}


def test_every_template_language_renders_without_a_stray_jinja_tag() -> None:
    for language in i18n.interface_languages():
        template = digest_template(language)
        for part in (template.html, template.text):
            assert not re.search(r"\[\[|\]\]|\{%|%\}|\[#", part), language


@pytest.mark.parametrize(("language", "welcome", "reminder"), [
    ("fr", "Bienvenue sur Paperwire", "Cette adresse est déjà abonnée à Paperwire"),
    (None, "Welcome to Paperwire", "You already subscribe to Paperwire"),
])
def test_a_confirmed_readers_queued_mails_speak_their_stored_language(
        settings: Settings, engine: Engine, tmp_path: Path, language: str | None,
        welcome: str, reminder: str) -> None:
    """The welcome and the reminder read the language from the reader's preferences, when
    the queued job is sent (a job queued before languages existed carries none)."""
    svc = services.Services.build(settings.model_copy(update={
        "outbox_dir": tmp_path / "outbox"}), engine)
    with db.transaction(engine) as session:
        row = subs.ensure(session, "marie@example.org", datetime.now(UTC))
        subs.update_preferences(session, row, reader_input.parse_preferences(
            ["llm"], "weekly", language=language, languages=("en", "fr")))
        subs.confirm_now(session, row, "admin", reader_input.Client())
        sid = row.id
    for kind, subject in (("welcome", welcome), ("already_subscribed", reminder)):
        job = MailJob.from_json({"kind": kind, "subscriber_id": sid})  # as queued before
        message = services._job_message(svc, job)
        assert message is not None and message.subject == subject


@pytest.mark.parametrize("subject", [
    "3 articles sur Apprentissage par renforcement et 2 autres thèmes · Paperwire, sam. 31 oct.",
    "Confirmez votre abonnement à Paperwire",
    "Élève " * 40,
])
def test_a_french_subject_reads_back_exactly_as_written(subject: str) -> None:
    # RFC 2047 §6.2: the space between two adjacent encoded words is dropped by readers; the
    # email package left "thèmes · Paperwire" as two of them, so every client showed
    # "thèmes· Paperwire", and its folding doubled another space.
    raw = _raw(Message("marie@example.org", subject, "<p>x</p>", "x", {}))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert head.isascii()
    assert str(message_from_bytes(raw, policy=default)["Subject"]) == subject
