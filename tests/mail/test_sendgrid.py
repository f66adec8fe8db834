"""The SendGrid sender, driven through the real `sendgrid` client against a local server,
and that server's own SendGrid checks (it must refuse what SendGrid refuses, and render
templates as SendGrid's Handlebars does)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
import sendgrid
from click.testing import CliRunner
from python_http_client.exceptions import HTTPError

from newsletter.cli import main
from newsletter.config import Settings
from newsletter.digest.selection import Interests, candidate, select
from newsletter.mail.batch import Batch, Recipient
from newsletter.mail.message import DATA_LIMIT, Addressee, compose
from newsletter.mail.render import DigestTemplate, digest_template
from newsletter.mail.senders import Message
from newsletter.mail.sendgrid import SendGridSender
from newsletter.mail.sendgrid_templates import KEEP_VERSIONS, TemplateError
from tests.support import sendgrid_server
from tests.support.sendgrid_server import RESERVED_HEADERS, Fault, SendGridServer

KEY = "SG.test-key"
FROM = "Paperwire Digest <digest@example.org>"
NOW = 1_700_000_000.0
BASE = "https://paperwire.example"
SHARED = {"List-Id": "Paperwire digest <digest.paperwire.example>",
          "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def recipient(i: int, **data: Any) -> Recipient:
    url = f"{BASE}/unsubscribe/tok{i}"
    values = {"s": f"3 papers for Reader {i}", "h": f"Hello Reader {i}", "u": BASE,
              "x": url, "m": f"{BASE}/manage/tok{i}", "v": f"{BASE}/digest/tok{i}", **data}
    return Recipient(to=f"reader{i}@example.com", data=values,
                     data_bytes=len(json.dumps(values)),
                     headers={"List-Unsubscribe": f"<{url}>"},
                     custom_args={"delivery_id": str(i)})


def make_batch(n: int, **overrides: Any) -> Batch:
    fields: dict[str, Any] = {"recipients": [recipient(i) for i in range(n)],
                              "headers": SHARED}
    fields.update(overrides)
    return Batch(**fields)


class Sleeps(list[float]):
    """Stands in for time.sleep: records each wait instead of spending it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sg() -> Iterator[SendGridServer]:
    with SendGridServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def sender_for(server: SendGridServer, sleeps: Sleeps, *, synced: bool = True,
               **options: Any) -> SendGridSender:
    """A sender on `server`; `synced`: the digest template is uploaded first, and the
    server's record of that cleared, so a test's faults meet its mail requests."""
    defaults: dict[str, Any] = {"host": server.url, "timeout": 2.0, "max_attempts": 4,
                                "max_wait": 30.0, "sleep": sleeps, "clock": lambda: NOW}
    defaults.update(options)
    api_key = defaults.pop("api_key", KEY)
    sender = SendGridSender(api_key, FROM, **defaults)
    if synced:
        sender.prepare()
        server.clear()
    return sender


def everyone_once(server: SendGridServer, n: int) -> None:
    counts = server.recipient_counts()
    assert counts == {f"reader{i}@example.com": 1 for i in range(n)}


# -- the sender ---------------------------------------------------------------------------


def test_2500_recipients_go_in_three_template_requests_each_with_their_own_digest(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    result = sender_for(sg, sleeps).send_batch(make_batch(2500))

    assert result.accepted == tuple(f"reader{i}@example.com" for i in range(2500))
    assert result.rejected == () and result.error is None
    assert result.requests == 3
    assert [r.personalizations for r in sg.requests] == [1000, 1000, 500]
    assert [r.status for r in sg.requests] == [202, 202, 202]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in sg.requests)
    everyone_once(sg, 2500)
    assert sleeps == [] and sg.api_requests == []  # the template was checked once, before
    for i in (0, 999, 1000, 2499):
        (msg,) = sg.messages_for(f"reader{i}@example.com")
        url = f"{BASE}/unsubscribe/tok{i}"
        assert msg.to == (f"reader{i}@example.com",)
        assert (msg.from_email, msg.from_name) == ("digest@example.org", "Paperwire Digest")
        # Rendered by the server from the template and this reader's data.
        assert msg.subject == f"3 papers for Reader {i}"
        assert msg.text is not None and msg.html is not None
        assert f"Hello Reader {i}" in msg.text and f"Unsubscribe: {url}" in msg.text
        assert f'href="{url}"' in msg.html
        assert msg.headers == {"List-Unsubscribe": f"<{url}>", **SHARED}
        assert msg.custom_args == {"delivery_id": str(i)}
    # Only features SendGrid documents today: a dynamic template and its data.
    first = sg.requests[0].payload
    assert set(first) == {"personalizations", "from", "template_id", "headers",
                          "tracking_settings"}
    assert first["template_id"].startswith("d-")
    assert set(first["personalizations"][0]) == {"to", "headers", "custom_args",
                                                  "dynamic_template_data"}


def test_requests_are_cut_by_bytes_as_well_as_by_count(sleeps: Sleeps) -> None:
    limit = 40_000
    with SendGridServer(api_key=KEY, max_bytes=limit) as server:
        sender = sender_for(server, sleeps, max_request_bytes=limit)
        result = sender.send_batch(make_batch(300, recipients=[
            recipient(i, h="x" * 900) for i in range(300)]))
        sizes = [r.size for r in server.requests]
        statuses = {r.status for r in server.requests}
    assert len(result.accepted) == 300 and result.rejected == ()
    assert len(sizes) > 1 and max(sizes) < limit and statuses == {202}
    # Full requests, not one reader each: the estimate is close to what is sent.
    assert max(sizes) > 0.9 * limit


def test_a_digest_over_the_data_cap_goes_alone_as_rendered_content(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    big = recipient(1, h="y" * (DATA_LIMIT + 100))
    batch = make_batch(3, recipients=[recipient(0), big, recipient(2)])

    result = sender_for(sg, sleeps).send_batch(batch)

    assert set(result.accepted) == {f"reader{i}@example.com" for i in range(3)}
    assert result.requests == 2 and result.rejected == ()
    alone = next(r.payload for r in sg.requests if "content" in r.payload)
    assert "template_id" not in alone and len(alone["personalizations"]) == 1
    assert [c["type"] for c in alone["content"]] == ["text/plain", "text/html"]
    (msg,) = sg.messages_for("reader1@example.com")
    # The same digest, rendered here from the same template: subject, links, headers.
    assert msg.subject == "3 papers for Reader 1"
    assert f"Unsubscribe: {BASE}/unsubscribe/tok1" in (msg.text or "")
    assert msg.headers["List-Unsubscribe"] == f"<{BASE}/unsubscribe/tok1>"
    assert msg.headers["List-Id"] == SHARED["List-Id"]
    assert msg.custom_args == {"delivery_id": "1"}
    everyone_once(sg, 3)


def test_429_waits_until_the_rate_limit_resets_then_sends_once(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps)
    sg.fail_next(status=429, times=2, headers={"X-RateLimit-Reset": str(int(NOW) + 7)})

    result = sender.send_batch(make_batch(20))

    assert sleeps == [7.0, 7.0]
    assert [r.status for r in sg.requests] == [429, 429, 202]
    assert result.requests == 3
    assert len(result.accepted) == 20 and result.rejected == () and result.error is None
    everyone_once(sg, 20)


def test_429_wait_is_capped_and_a_missing_reset_backs_off(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps, max_wait=30.0, backoff=1.0)
    sg.fail_next(status=429, headers={"X-RateLimit-Reset": str(int(NOW) + 3600)})
    sg.fail_next(status=429)  # no X-RateLimit-Reset at all

    result = sender.send_batch(make_batch(5))

    assert sleeps[0] == 30.0
    assert 0.5 <= sleeps[1] <= 1.0
    assert result.requests == 3 and len(result.accepted) == 5
    everyone_once(sg, 5)


def test_500_is_retried_with_backoff(sg: SendGridServer, sleeps: Sleeps) -> None:
    sender = sender_for(sg, sleeps, backoff=1.0)
    sg.fail_next(status=500)

    result = sender.send_batch(make_batch(10))

    assert [r.status for r in sg.requests] == [500, 202]
    assert result.requests == 2 and len(result.accepted) == 10 and result.error is None
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0
    everyone_once(sg, 10)


def test_5xx_retries_are_bounded_and_leave_the_rest_unsent(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps, max_attempts=3, backoff=1.0)
    sg.fail_next(status=503, times=10)

    result = sender.send_batch(make_batch(1500))

    # Three tries of the first request; the second is not attempted while SendGrid is down.
    assert len(sg.requests) == 3 and result.requests == 3
    assert result.accepted == () and result.rejected == ()
    assert result.error is not None and "503" in result.error
    assert "service unavailable" in result.error
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert sg.messages == []


def test_a_stalled_answer_times_out_and_is_retried(sg: SendGridServer, sleeps: Sleeps) -> None:
    sender = sender_for(sg, sleeps, timeout=0.2)
    # Were the client's timeout not set, it would wait for this answer: a 400, never retried.
    sg.inject(Fault(delay=10.0, status=400, message="answered too late"))

    result = sender.send_batch(make_batch(10))

    assert len(sg.requests) == 2 and sg.requests[1].status == 202
    assert result.requests == 2 and len(result.accepted) == 10
    assert result.rejected == () and result.error is None
    assert len(sleeps) == 1
    everyone_once(sg, 10)


def test_a_connection_reset_is_retried(sg: SendGridServer, sleeps: Sleeps) -> None:
    sender = sender_for(sg, sleeps)
    sg.reset_next()

    result = sender.send_batch(make_batch(10))

    assert [r.status for r in sg.requests] == [None, 202]
    assert result.requests == 2 and len(result.accepted) == 10 and result.error is None
    everyone_once(sg, 10)


def test_a_request_taken_but_unanswered_repeats_only_its_own_recipients(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps)
    sender.max_batch = 10
    # SendGrid took the second request and the answer was lost: the retry repeats exactly
    # that request's recipients (the documented in-flight case), nobody else.
    sg.on_request = lambda r: Fault(reset=True, deliver=True) if r.index == 2 else None

    result = sender.send_batch(make_batch(30))

    assert result.requests == 4 and len(result.accepted) == 30
    counts = sg.recipient_counts()
    assert {a for a, c in counts.items() if c == 2} == {
        f"reader{i}@example.com" for i in range(10, 20)}
    assert set(counts.values()) == {1, 2} and len(counts) == 30


@pytest.mark.parametrize("status", [400, 403, 413])
def test_permanent_refusals_are_not_retried_and_carry_sendgrids_message(
    status: int, sleeps: Sleeps
) -> None:
    batch = make_batch(20)
    server_options: dict[str, Any] = {"api_key": KEY}
    if status == 400:  # the server's own validation: Reply-To is a reserved header
        batch = make_batch(20, headers={"Reply-To": "editor@example.org"})
        expected = "'Reply-To' is reserved"
    elif status == 403:
        server_options["verified_senders"] = ["someone-else@example.org"]
        expected = "does not match a verified Sender Identity"
    else:
        server_options["max_bytes"] = 2_000
        expected = "content too large"

    with SendGridServer(**server_options) as server:
        result = sender_for(server, sleeps).send_batch(batch)

        assert [r.status for r in server.requests] == [status]
        assert server.messages == []
    assert result.requests == 1 and sleeps == []
    assert result.accepted == ()
    if status == 403:
        # The operator's sender is wrong, not the readers: they stay unsent, for later.
        assert result.rejected == ()
    else:
        assert result.rejected == tuple(r.to for r in batch.recipients)
    assert result.error is not None
    assert result.error.startswith(f"SendGrid {status}: ") and expected in result.error


def test_a_wrong_key_sends_nothing_and_rejects_nobody(sleeps: Sleeps) -> None:
    with SendGridServer(api_key=KEY) as server:
        sender = sender_for(server, sleeps, api_key="SG.revoked", synced=False)
        with pytest.raises(TemplateError, match="invalid, expired, or revoked"):
            sender.prepare()
        result = sender.send_batch(make_batch(1500))
        assert server.requests == []  # no mail request: the template check failed first
        assert [r.status for r in server.api_requests] == [401, 401]
    assert result.rejected == () and result.accepted == () and result.requests == 0
    assert result.error is not None and "SendGrid 401" in result.error


def test_a_400_refuses_one_request_and_the_next_is_still_sent(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps)
    sg.fail_next(status=400, message="Invalid dynamic_template_data")

    result = sender.send_batch(make_batch(1500))

    assert result.requests == 2 and sleeps == []
    assert result.rejected == tuple(f"reader{i}@example.com" for i in range(1000))
    assert result.accepted == tuple(f"reader{i}@example.com" for i in range(1000, 1500))
    assert result.error == "SendGrid 400: Invalid dynamic_template_data"
    assert len(sg.messages) == 500


def test_a_single_message_goes_as_plain_content(sg: SendGridServer, sleeps: Sleeps) -> None:
    sender = sender_for(sg, sleeps, synced=False)
    sender.send(Message("ada@example.org", "Confirm", "<p>Hi & bye</p>", "Hi & bye",
                        {"List-Id": "<x.example>"}))
    (msg,) = sg.messages
    assert (msg.subject, msg.text, msg.html) == ("Confirm", "Hi & bye", "<p>Hi & bye</p>")
    assert msg.headers == {"List-Id": "<x.example>"} and sg.api_requests == []


def test_from_settings_sets_host_timeout_and_template() -> None:
    settings = Settings(mail_backend="sendgrid", sendgrid_api_key=KEY,
                        sendgrid_host="http://127.0.0.1:9", sendgrid_timeout=4.5,
                        sendgrid_max_attempts=2, mail_from="digest@example.org",
                        sendgrid_template_name="pw-test", sendgrid_template_sync=False)
    sender = SendGridSender.from_settings(settings)
    assert sender.client.client.timeout == 4.5
    assert sender.client.client.host == "http://127.0.0.1:9"
    assert sender.requests.max_attempts == 2
    assert sender.sender == {"email": "digest@example.org"}
    assert (sender.templates.name, sender.templates.sync_template) == ("pw-test", False)


def test_nothing_answering_is_a_transient_failure(sleeps: Sleeps) -> None:
    with SendGridServer() as server:
        url = server.url  # a port that is then closed again
    sender = SendGridSender(KEY, FROM, host=url, timeout=0.5, max_attempts=2, sleep=sleeps)
    with pytest.raises(TemplateError, match="unreachable"):
        sender.prepare()
    assert len(sleeps) == 1


# -- the digest template on SendGrid ------------------------------------------------------


def versions_posted(server: SendGridServer) -> int:
    return sum(1 for r in server.api_requests
               if r.method == "POST" and r.path.endswith("/versions"))


def test_sync_uploads_once_and_again_only_when_the_template_changes(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sender = sender_for(sg, sleeps, synced=False)
    first = sender.sync()
    assert (first.created, first.uploaded, first.activated) == (True, True, True)
    again = sender.sync()
    assert (again.created, again.uploaded, again.activated) == (False, False, False)
    assert versions_posted(sg) == 1 and again.template_id == first.template_id

    template = digest_template()
    changed = DigestTemplate(template.subject, template.html + "<!-- v2 -->", template.text)
    assert changed.version != template.version
    second = sender.sync(changed)
    assert (second.uploaded, second.activated) == (True, True)
    assert versions_posted(sg) == 2
    (stored,) = sg.templates.values()
    assert [v.active for v in stored.versions] == [0, 1]
    assert stored.versions[1].html_content.endswith("<!-- v2 -->")
    assert stored.versions[1].plain_content == template.text  # ours, not generated

    # Back to the first: that version exists, so it is activated, not uploaded again.
    back = sender.sync()
    assert (back.uploaded, back.activated) == (False, True)
    assert versions_posted(sg) == 2 and [v.active for v in stored.versions] == [1, 0]


def test_each_upload_keeps_a_templates_old_versions_few(sg: SendGridServer,
                                                       sleeps: Sleeps) -> None:
    """SendGrid allows 300 versions across an account's templates: release after release,
    each language's template keeps its active version and the last KEEP_VERSIONS."""
    sender = sender_for(sg, sleeps, synced=False)
    template = digest_template()
    releases = KEEP_VERSIONS + 4
    for release in range(releases):
        changed = DigestTemplate(template.subject, f"{template.html}<!-- {release} -->",
                                 template.text)
        assert sender.sync(changed).uploaded
    (stored,) = sg.templates.values()
    assert len(stored.versions) == 1 + KEEP_VERSIONS
    assert stored.active is not None and stored.active.html_content.endswith(
        f"<!-- {releases - 1} -->")
    # The newest old ones are kept, to go back to.
    kept = sorted(int(v.html_content.rsplit("<!-- ", 1)[1].split()[0]) for v in stored.versions)
    assert kept == list(range(releases - 1 - KEEP_VERSIONS, releases))


def test_the_stand_in_refuses_versions_over_the_accounts_limit(
        sg: SendGridServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sendgrid_server, "MAX_VERSIONS", 2)
    sender = sender_for(sg, sleeps, synced=False)
    assert len(sender.sync_all()) == 2  # English and French: the account's two versions
    template = digest_template()
    changed = DigestTemplate(template.subject, template.html + "<!-- more -->", template.text)
    with pytest.raises(TemplateError, match="more than 2 versions across all templates"):
        sender.sync(changed)


def test_an_outdated_template_stops_the_send_when_sync_is_off(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    template = digest_template()
    old = DigestTemplate(template.subject, template.html + "<!-- old -->", template.text)
    sender_for(sg, sleeps, synced=False).sync(old)
    sg.clear()
    strict = sender_for(sg, sleeps, synced=False, sync_template=False)

    with pytest.raises(TemplateError, match=r"outdated.*newsletter sendgrid sync"):
        strict.prepare()
    result = strict.send_batch(make_batch(5))

    assert result.accepted == () and result.rejected == () and result.requests == 0
    assert "newsletter sendgrid sync" in (result.error or "")
    assert sg.requests == [] and versions_posted(sg) == 0
    # With sync on (the default) the same check uploads this release's version instead,
    # the English one's and the French one's.
    sender_for(sg, sleeps, synced=False).prepare()
    assert versions_posted(sg) == 2


def test_the_cli_syncs_and_reports(sg: SendGridServer) -> None:
    env = {"MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": KEY, "SENDGRID_HOST": sg.url,
           "SENDGRID_TEMPLATE_NAME": "cli-digest", "MAIL_FROM": FROM}
    status = CliRunner().invoke(main, ["sendgrid", "status"], env=env)
    assert status.exit_code == 1 and "no dynamic template named 'cli-digest'" in status.output
    synced = CliRunner().invoke(main, ["sendgrid", "sync"], env=env)
    assert synced.exit_code == 0, synced.output
    assert "uploaded and activated" in synced.output
    again = CliRunner().invoke(main, ["sendgrid", "sync"], env=env)
    assert "nothing to do" in again.output
    assert CliRunner().invoke(main, ["sendgrid", "status"], env=env).exit_code == 0
    # One template per interface language, the English one keeping the configured name.
    assert [t.name for t in sg.templates.values()] == ["cli-digest", "cli-digest-fr"]
    wrong = CliRunner().invoke(main, ["sendgrid", "sync"], env={**env, "SENDGRID_API_KEY": "x"})
    assert wrong.exit_code == 1 and "401" in wrong.output


# -- escaping, through the server's real rendering ----------------------------------------

HOSTILE = "{{ 7*7 }} <script>alert(1)</script> [[pw:manage]] }}{{ & \"q\" {{{raw}}}"


def test_hostile_feed_text_arrives_literally_and_inert(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    paper = candidate(1, "2609.00001", HOSTILE, "abstract", [HOSTILE], ["llm"],
                      [f"point {HOSTILE}"], card_source="llm",
                      code_url="https://github.com/a/b")
    reader = Addressee("ada@example.org", 3, select([paper], Interests(topics=("llm",))),
                       f"{BASE}/manage/T", f"{BASE}/unsubscribe/T", f"{BASE}/digest/T")
    batch = compose([reader], day=date(2026, 9, 24), frequency="daily", site_url=BASE)

    assert sender_for(sg, sleeps).send_batch(batch).accepted == ("ada@example.org",)

    (msg,) = sg.messages
    html, text = msg.html or "", msg.text or ""
    escaped = ("{{ 7*7 }} &lt;script&gt;alert(1)&lt;/script&gt; [[pw:manage]] }}{{ &amp; "
               "&quot;q&quot; {{{raw}}}")
    assert escaped in html and "<script>" not in html and "49" not in html
    # The text part is not HTML: nothing escaped, nothing evaluated.
    assert f"1. {HOSTILE}" in text and f"   - point {HOSTILE}" in text
    assert "&lt;" not in text and "&amp;" not in text
    assert "Manage topics: https://paperwire.example/manage/T" in text


# -- the server's own checks --------------------------------------------------------------


def post(server: SendGridServer, body: Any, api_key: str = KEY) -> tuple[int, dict[str, Any]]:
    """POST mail/send through the real client; (status, JSON body or {})."""
    client = sendgrid.SendGridAPIClient(api_key=api_key, host=server.url)
    client.client.timeout = 5
    try:
        response = client.client.mail.send.post(request_body=body)
    except HTTPError as exc:
        return exc.status_code, exc.to_dict
    assert response.body == b""
    return response.status_code, {"x-message-id": response.headers["X-Message-Id"]}


def api(server: SendGridServer, method: str, path: str, body: Any = None,
        **query: Any) -> tuple[int, Any]:
    client = sendgrid.SendGridAPIClient(api_key=KEY, host=server.url).client
    for part in path.strip("/").split("/"):
        client = client._(part)
    call = getattr(client, method.lower())
    try:
        response = call(request_body=body, query_params=query or None) if body is not None \
            else call(query_params=query or None)
    except HTTPError as exc:
        return exc.status_code, exc.to_dict
    return response.status_code, response.to_dict


def dynamic_template(server: SendGridServer, html: str, text: str = "t",
                     subject: str = "{{{s}}}") -> str:
    status, made = api(server, "POST", "templates", {"name": "t", "generation": "dynamic"})
    assert status == 201 and made["id"].startswith("d-")
    status, version = api(server, "POST", f"templates/{made['id']}/versions",
                          {"name": "v1", "subject": subject, "html_content": html,
                           "plain_content": text, "generate_plain_content": False})
    assert status == 201 and version["active"] == 1, version
    return str(made["id"])


def valid(n: int = 2) -> dict[str, Any]:
    return {
        "personalizations": [
            {"to": [{"email": f"r{i}@example.com"}],
             "substitutions": {"-n-": str(i)},
             "headers": {"List-Unsubscribe": f"<{BASE}/u/{i}>"},
             "custom_args": {"delivery_id": str(i)}}
            for i in range(n)
        ],
        "from": {"email": "digest@example.org", "name": "Paperwire"},
        "subject": "Digest -n-",
        "content": [{"type": "text/plain", "value": "text -n-"},
                    {"type": "text/html", "value": "<b>html -n-</b>"}],
        "headers": {"List-Id": "<digest.paperwire.example>"},
        "custom_args": {"edition": "7"},
    }


def templated(server: SendGridServer, n: int = 2) -> dict[str, Any]:
    template_id = dynamic_template(server, "<p>{{h}}</p>", "{{{h}}}")
    return {
        "personalizations": [{"to": [{"email": f"r{i}@example.com"}],
                              "dynamic_template_data": {"s": f"S{i}", "h": f"H{i}"}}
                             for i in range(n)],
        "from": {"email": "digest@example.org"},
        "template_id": template_id,
    }


def test_server_accepts_a_valid_request_and_records_each_message(sg: SendGridServer) -> None:
    status, answer = post(sg, valid(2))

    assert status == 202 and answer["x-message-id"]
    assert [r.status for r in sg.requests] == [202]
    first, second = sg.messages
    assert first.to == ("r0@example.com",) and second.to == ("r1@example.com",)
    assert (second.subject, second.text, second.html) == ("Digest 1", "text 1", "<b>html 1</b>")
    assert second.headers == {"List-Id": "<digest.paperwire.example>",
                              "List-Unsubscribe": f"<{BASE}/u/1>"}
    assert second.custom_args == {"edition": "7", "delivery_id": "1"}
    assert second.message_id == answer["x-message-id"]


def test_server_renders_a_dynamic_template_per_personalization(sg: SendGridServer) -> None:
    status, _ = post(sg, templated(sg))
    assert status == 202
    assert [(m.subject, m.html, m.text) for m in sg.messages] == [
        ("S0", "<p>H0</p>", "H0"), ("S1", "<p>H1</p>", "H1")]


def test_server_substitutes_in_one_pass_longest_tag_first(sg: SendGridServer) -> None:
    body = valid(1)
    body["personalizations"][0]["substitutions"] = {"-a-": "-ab-", "-ab-": "X"}
    body["content"] = [{"type": "text/plain", "value": "-a- -ab-"}]
    assert post(sg, body)[0] == 202
    assert sg.messages[0].text == "-ab- X"
    assert sg.messages[0].html is None


def test_server_accepts_a_subject_given_in_every_personalization(sg: SendGridServer) -> None:
    body = valid(2)
    del body["subject"]
    for i, p in enumerate(body["personalizations"]):
        p["subject"] = f"own {i}"
    assert post(sg, body)[0] == 202
    assert [m.subject for m in sg.messages] == ["own 0", "own 1"]


HELPERS_HTML = (
    "{{#equals n \"3\"}}eq{{else}}ne{{/equals}}|{{#notEquals n 4}}not4{{/notEquals}}|"
    "{{#greaterThan n 2}}gt{{/greaterThan}}|{{#lessThan n 2}}lt{{else}}notlt{{/lessThan}}|"
    "{{#and a b}}and{{else}}nand{{/and}}|{{#or a b}}or{{/or}}|"
    "{{#greaterThan (length items) 1}}many{{/greaterThan}}|{{length word}}|"
    "{{insert missing \"default=Reader\"}}|{{#unless b}}unless{{else}}else{{/unless}}|"
    "{{#each items}}{{@index}}{{this}}{{/each}}|{{#if @root.a}}root{{/if}}|"
    "{{formatDate when \"dddd D MMMM YYYY h:mm A\"}}|"
    "{{formatDate when \"HH:mm Z\" \"-0800\"}}"
)


def test_server_renders_the_helpers_sendgrid_documents(sg: SendGridServer) -> None:
    template_id = dynamic_template(sg, HELPERS_HTML)
    body = {"personalizations": [{"to": [{"email": "r@example.com"}], "dynamic_template_data": {
        "s": "S", "n": 3, "a": "yes", "b": "", "items": ["x", "y"], "word": "four",
        "when": "2020-01-01T23:00:00.000Z"}}],
        "from": {"email": "digest@example.org"}, "template_id": template_id}
    assert post(sg, body)[0] == 202
    assert sg.messages[0].html == (
        "eq|not4|gt|notlt|nand|or|many|4|Reader|unless|0x1y|root|"
        "Wednesday 1 January 2020 11:00 PM|15:00 -08:00")


@pytest.mark.parametrize("source", [
    "{{#with user}}{{name}}{{/with}}", "{{lookup items 0}}", "{{> header}}",
    "{{#repeat 3}}x{{/repeat}}", "{{shout name}}", "{{#if (upper a)}}x{{/if}}",
    "{{#if a}}unclosed",
])
def test_server_refuses_a_template_sendgrid_could_not_render(
    sg: SendGridServer, source: str
) -> None:
    _, made = api(sg, "POST", "templates", {"name": "t", "generation": "dynamic"})
    status, answer = api(sg, "POST", f"templates/{made['id']}/versions",
                         {"name": "v", "subject": "s", "html_content": source,
                          "generate_plain_content": False})
    assert status == 400 and answer["errors"][0]["field"] == "html_content", answer


def test_server_templates_api_follows_the_reference(sg: SendGridServer) -> None:
    assert api(sg, "GET", "templates")[0] == 400  # page_size is required
    _, legacy = api(sg, "POST", "templates", {"name": "old"})
    assert legacy["generation"] == "legacy" and not legacy["id"].startswith("d-")
    _, made = api(sg, "POST", "templates", {"name": "new", "generation": "dynamic"})
    status, listed = api(sg, "GET", "templates", generations="dynamic", page_size=1)
    assert status == 200 and [t["name"] for t in listed["result"]] == ["new"]
    assert api(sg, "POST", f"templates/{made['id']}/versions",
               {"name": "v", "html_content": "x"})[0] == 400  # subject is required
    _, v1 = api(sg, "POST", f"templates/{made['id']}/versions",
                {"name": "v1", "subject": "s", "html_content": "<p>a</p>"})
    assert v1["active"] == 1 and v1["plain_content"] == "a"  # first is active; generated
    _, v2 = api(sg, "POST", f"templates/{made['id']}/versions",
                {"name": "v2", "subject": "s", "html_content": "b", "active": 0})
    assert v2["active"] == 0
    status, active = api(sg, "POST", f"templates/{made['id']}/versions/{v2['id']}/activate")
    assert status == 200 and active["active"] == 1
    _, detail = api(sg, "GET", f"templates/{made['id']}")
    assert [(v["name"], v["active"]) for v in detail["versions"]] == [("v1", 0), ("v2", 1)]
    assert api(sg, "GET", "templates/d-missing")[0] == 404


def _dup_across(body: dict[str, Any]) -> None:
    body["personalizations"][1]["to"] = [{"email": "R0@Example.com"}]


def _dup_to_bcc(body: dict[str, Any]) -> None:
    body["personalizations"][0]["bcc"] = [{"email": "r0@example.com"}]


def _too_many_personalizations(body: dict[str, Any]) -> None:
    body["personalizations"] = [{"to": [{"email": f"p{i}@example.com"}]} for i in range(1001)]


def _too_many_recipients(body: dict[str, Any]) -> None:
    body["personalizations"][0]["cc"] = [{"email": f"c{i}@example.com"} for i in range(999)]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


_DELETE = object()

REJECTIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("sections, retired in 2020", _set("sections", {"[[pw:a]]": "x"}),
     "sections", "retired on 13 August 2020"),
    ("an unknown field", _set("personalizations.0.section", "x"),
     "personalizations.0.section", "not part of the v3 Mail Send"),
    ("duplicate across personalizations", _dup_across,
     "personalizations.1.to", "unique between to, cc, and bcc"),
    ("duplicate between to and bcc", _dup_to_bcc,
     "personalizations.0.bcc", "first duplicate instance of [r0@example.com]"),
    ("1001 personalizations", _too_many_personalizations,
     "personalizations", "limited to 1000 personalizations"),
    ("1001 recipients", _too_many_recipients,
     "personalizations", "limit of 1000 total recipients"),
    ("no to", _set("personalizations.0.to", []), "personalizations.0.to", "to array is required"),
    ("bad address", _set("personalizations.1.to", [{"email": "not an address"}]),
     "personalizations.1.to.0.email", "valid address"),
    ("no from", _set("from", _DELETE), "from", "from object must be provided"),
    ("no subject", _set("subject", _DELETE), "subject", "subject is required"),
    ("no content", _set("content", []), "content", "content parameter is required"),
    ("empty part", _set("content", [{"type": "text/plain", "value": ""}]),
     "content.0.value", "at least one character"),
    ("html before text",
     _set("content", [{"type": "text/html", "value": "<b>h</b>"},
                      {"type": "text/plain", "value": "t"}]),
     "content", "this order: text/plain, text/html"),
    ("header not a string", _set("headers", {"X-Priority": 1}),
     "headers.X-Priority", "Expected: string"),
    ("custom_args not a string", _set("personalizations.0.custom_args", {"delivery_id": 7}),
     "personalizations.0.custom_args", "must be strings"),
    ("substitution not a string", _set("personalizations.0.substitutions", {"-n-": 1}),
     "personalizations.0.substitutions", "must be strings"),
    ("custom_args too large", _set("personalizations.0.custom_args", {"x": "y" * 10_000}),
     "personalizations.0.custom_args", "may not exceed 10000 bytes"),
    ("reply_to and reply_to_list", _set("reply_to_list", [{"email": "a@example.org"}]),
     "reply_to_list", "not both"),
    ("template data without a template", _set("personalizations.0.dynamic_template_data", {}),
     "personalizations.0.dynamic_template_data", "template_id starting with d-"),
    ("an unknown template", _set("template_id", "d-0000"), "template_id",
     "not a template of this account"),
]


@pytest.mark.parametrize(("mutate", "field", "message"),
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_server_refuses_what_sendgrid_refuses(
    sg: SendGridServer, mutate: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    body = valid(2)
    body["reply_to"] = {"email": "editor@example.org"}
    mutate(body)

    status, answer = post(sg, body)

    assert status == 400
    assert any(e["field"] == field and message in e["message"] for e in answer["errors"]), answer
    assert sg.messages == [] and [r.status for r in sg.requests] == [400]


TEMPLATE_REJECTIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("substitutions with a dynamic template",
     _set("personalizations.0.substitutions", {"-n-": "1"}),
     "personalizations.0.substitutions", "Substitutions may not be used with dynamic"),
    ("template data over 10,000 bytes",
     _set("personalizations.1.dynamic_template_data", {"h": "x" * 10_000}),
     "personalizations.1.dynamic_template_data", "may not exceed 10000 bytes"),
    ("template data not an object", _set("personalizations.0.dynamic_template_data", []),
     "personalizations.0.dynamic_template_data", "Expected: object"),
]


@pytest.mark.parametrize(("mutate", "field", "message"),
                         [r[1:] for r in TEMPLATE_REJECTIONS],
                         ids=[r[0] for r in TEMPLATE_REJECTIONS])
def test_server_refuses_what_sendgrid_refuses_with_a_template(
    sg: SendGridServer, mutate: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    body = templated(sg)
    assert post(sg, body)[0] == 202  # no subject and no content: the template has both
    mutate(body)
    status, answer = post(sg, body)
    assert status == 400
    assert any(e["field"] == field and message in e["message"] for e in answer["errors"]), answer


def test_server_refuses_a_template_without_an_active_version(sg: SendGridServer) -> None:
    body = templated(sg)
    (template,) = sg.templates.values()
    template.versions.clear()
    status, answer = post(sg, body)
    assert status == 400 and answer["errors"][0]["field"] == "template_id"


@pytest.mark.parametrize("name", sorted(RESERVED_HEADERS))
@pytest.mark.parametrize("where", ["top", "personalization"])
def test_server_refuses_reserved_headers(sg: SendGridServer, name: str, where: str) -> None:
    body = valid(2)
    header = name.title()  # case does not matter to SendGrid
    if where == "top":
        body["headers"][header] = "x"
        field = f"headers.{header}"
    else:
        body["personalizations"][1]["headers"][header] = "x"
        field = f"personalizations.1.headers.{header}"

    status, answer = post(sg, body)

    assert status == 400
    assert [e["field"] for e in answer["errors"]] == [field]
    assert "reserved" in answer["errors"][0]["message"]
    assert sg.messages == []


def test_server_names_only_the_first_duplicate(sg: SendGridServer) -> None:
    body = valid(3)
    body["personalizations"][1]["to"] = [{"email": "r0@example.com"}]
    body["personalizations"][2]["to"] = [{"email": "r0@example.com"}]
    status, answer = post(sg, body)
    assert status == 400 and len(answer["errors"]) == 1


def test_server_checks_the_api_key(sg: SendGridServer) -> None:
    status, answer = post(sg, valid(), api_key="SG.other")
    assert status == 401
    assert answer["errors"][0]["message"] == (
        "The provided authorization grant is invalid, expired, or revoked")
    client = sendgrid.SendGridAPIClient(api_key=KEY, host=sg.url)
    client.client.request_headers.pop("Authorization")
    with pytest.raises(HTTPError) as caught:
        client.client.mail.send.post(request_body=valid())
    assert caught.value.status_code == 401
    assert sg.messages == []


def test_server_refuses_a_payload_at_its_size_limit_with_413() -> None:
    with SendGridServer(api_key=KEY, max_bytes=50_000) as server:
        body = valid(1)
        assert post(server, body)[0] == 202
        body["content"][0]["value"] = "x" * 60_000
        status, answer = post(server, body)
        assert status == 413 and "content too large" in answer["errors"][0]["message"]
        assert len(server.messages) == 1


def test_server_refuses_an_unverified_sender_with_403() -> None:
    with SendGridServer(api_key=KEY, verified_senders=["digest@example.org"]) as server:
        assert post(server, valid())[0] == 202
        body = valid()
        body["from"]["email"] = "spoof@example.net"
        status, answer = post(server, body)
        assert status == 403 and "verified Sender Identity" in answer["errors"][0]["message"]
        assert len(server.messages) == 2  # only the first request's two


def test_server_sandbox_mode_validates_but_sends_nothing(sg: SendGridServer) -> None:
    body = valid()
    body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    client = sendgrid.SendGridAPIClient(api_key=KEY, host=sg.url)
    assert client.client.mail.send.post(request_body=body).status_code == 200
    assert sg.messages == [] and sg.requests[0].personalizations == 2


def test_server_faults_are_consumed_in_order(sg: SendGridServer) -> None:
    sg.fail_next(status=429, headers={"X-RateLimit-Reset": "123"})
    sg.fail_next(status=503, message="try later", deliver=True)
    client = sendgrid.SendGridAPIClient(api_key=KEY, host=sg.url)
    with pytest.raises(HTTPError) as first:
        client.client.mail.send.post(request_body=valid())
    assert first.value.status_code == 429 and first.value.headers["X-RateLimit-Reset"] == "123"
    with pytest.raises(HTTPError) as second:
        client.client.mail.send.post(request_body=valid())
    assert second.value.status_code == 503
    assert second.value.to_dict["errors"][0]["message"] == "try later"
    assert len(sg.messages) == 2  # deliver=True: taken although refused
    assert post(sg, valid())[0] == 202
    assert [r.status for r in sg.requests] == [429, 503, 202]
    sg.clear()
    assert sg.requests == [] and sg.messages == []


def test_server_without_recording_still_checks_and_counts(sleeps: Sleeps) -> None:
    with SendGridServer(api_key=KEY, record=False) as server:
        sender = sender_for(server, sleeps)
        result = sender.send_batch(make_batch(1200))
        assert len(result.accepted) == 1200
        assert server.messages == [] and server.requests[0].payload is None
        assert [r.personalizations for r in server.requests] == [1000, 200]
        everyone_once(server, 1200)
        # Still SendGrid's limits: template data over the cap is refused.
        body = {"personalizations": [{"to": [{"email": "a@example.org"}],
                                      "dynamic_template_data": {"h": "x" * 10_001}}],
                "from": {"email": "digest@example.org"},
                "template_id": next(iter(server.templates))}
        assert post(server, body)[0] == 400
