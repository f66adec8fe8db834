"""The SendGrid sender, driven through the real `sendgrid` client against a local server,
and that server's own SendGrid checks (it must refuse what SendGrid refuses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sendgrid
from python_http_client.exceptions import HTTPError

from newsletter.batch import Batch, Recipient
from newsletter.config import Settings
from newsletter.sendgrid import SendGridSender
from tests.support.sendgrid_server import RESERVED_HEADERS, Fault, SendGridServer

KEY = "SG.test-key"
FROM = "Paperwire Digest <digest@example.org>"
NOW = 1_700_000_000.0
BASE = "https://paperwire.example"


def recipient(i: int) -> Recipient:
    url = f"{BASE}/unsubscribe/tok{i}"
    return Recipient(
        to=f"reader{i}@example.com",
        substitutions={"-name-": f"Reader {i}", "-unsubscribe_url-": url},
        headers={"List-Unsubscribe": f"<{url}>"},
        custom_args={"delivery_id": str(i)},
    )


def make_batch(n: int, **overrides: Any) -> Batch:
    fields: dict[str, Any] = {
        "subject": "3 papers on LLMs for -name-",
        "html": "<p>Hello -name-</p><a href=\"-unsubscribe_url-\">Unsubscribe</a>",
        "text": "Hello -name-\nUnsubscribe: -unsubscribe_url-\n",
        "recipients": [recipient(i) for i in range(n)],
        "headers": {"List-Id": "Paperwire digest <digest.paperwire.example>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
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


def sender_for(server: SendGridServer, sleeps: Sleeps, **options: Any) -> SendGridSender:
    defaults: dict[str, Any] = {"host": server.url, "timeout": 2.0, "max_attempts": 4,
                                "max_wait": 30.0, "sleep": sleeps, "clock": lambda: NOW}
    defaults.update(options)
    api_key = defaults.pop("api_key", KEY)
    return SendGridSender(api_key, FROM, **defaults)


def everyone_once(server: SendGridServer, n: int) -> None:
    counts = server.recipient_counts()
    assert counts == {f"reader{i}@example.com": 1 for i in range(n)}


# -- the sender ---------------------------------------------------------------------------


def test_2500_recipients_go_in_three_requests_each_with_their_own_links(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    result = sender_for(sg, sleeps).send_batch(make_batch(2500))

    assert result.accepted == tuple(f"reader{i}@example.com" for i in range(2500))
    assert result.rejected == ()
    assert result.error is None
    assert result.requests == 3
    assert [r.personalizations for r in sg.requests] == [1000, 1000, 500]
    assert [r.status for r in sg.requests] == [202, 202, 202]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in sg.requests)
    everyone_once(sg, 2500)
    assert sleeps == []
    for i in (0, 999, 1000, 2499):
        (msg,) = sg.messages_for(f"reader{i}@example.com")
        url = f"{BASE}/unsubscribe/tok{i}"
        assert msg.to == (f"reader{i}@example.com",)
        assert (msg.from_email, msg.from_name) == ("digest@example.org", "Paperwire Digest")
        assert msg.subject == f"3 papers on LLMs for Reader {i}"
        assert msg.text == f"Hello Reader {i}\nUnsubscribe: {url}\n"
        assert msg.html == f"<p>Hello Reader {i}</p><a href=\"{url}\">Unsubscribe</a>"
        assert msg.headers == {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": "Paperwire digest <digest.paperwire.example>",
        }
        assert msg.custom_args == {"delivery_id": str(i)}
    # The parts went in SendGrid's required order, unsubstituted (SendGrid fills them).
    first = sg.requests[0].payload
    assert [c["type"] for c in first["content"]] == ["text/plain", "text/html"]
    assert first["personalizations"][0]["substitutions"]["-name-"] == "Reader 0"


def test_429_waits_until_the_rate_limit_resets_then_sends_once(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sg.fail_next(status=429, times=2, headers={"X-RateLimit-Reset": str(int(NOW) + 7)})

    result = sender_for(sg, sleeps).send_batch(make_batch(20))

    assert sleeps == [7.0, 7.0]
    assert [r.status for r in sg.requests] == [429, 429, 202]
    assert result.requests == 3
    assert len(result.accepted) == 20 and result.rejected == () and result.error is None
    everyone_once(sg, 20)


def test_429_wait_is_capped_and_a_missing_reset_backs_off(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sg.fail_next(status=429, headers={"X-RateLimit-Reset": str(int(NOW) + 3600)})
    sg.fail_next(status=429)  # no X-RateLimit-Reset at all

    result = sender_for(sg, sleeps, max_wait=30.0, backoff=1.0).send_batch(make_batch(5))

    assert sleeps[0] == 30.0
    assert 0.5 <= sleeps[1] <= 1.0
    assert result.requests == 3 and len(result.accepted) == 5
    everyone_once(sg, 5)


def test_500_is_retried_with_backoff(sg: SendGridServer, sleeps: Sleeps) -> None:
    sg.fail_next(status=500)

    result = sender_for(sg, sleeps, backoff=1.0).send_batch(make_batch(10))

    assert [r.status for r in sg.requests] == [500, 202]
    assert result.requests == 2 and len(result.accepted) == 10 and result.error is None
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0
    everyone_once(sg, 10)


def test_5xx_retries_are_bounded_and_leave_the_rest_unsent(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sg.fail_next(status=503, times=10)

    result = sender_for(sg, sleeps, max_attempts=3, backoff=1.0).send_batch(make_batch(1500))

    # Three tries of the first chunk; the second is not attempted while SendGrid is down.
    assert len(sg.requests) == 3 and result.requests == 3
    assert result.accepted == () and result.rejected == ()
    assert result.error is not None and "503" in result.error
    assert "service unavailable" in result.error
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert sg.messages == []


def test_a_stalled_answer_times_out_and_is_retried(sg: SendGridServer, sleeps: Sleeps) -> None:
    # Were the client's timeout not set, it would wait for this answer: a 400, never retried.
    sg.inject(Fault(delay=10.0, status=400, message="answered too late"))

    result = sender_for(sg, sleeps, timeout=0.2).send_batch(make_batch(10))

    assert len(sg.requests) == 2 and sg.requests[1].status == 202
    assert result.requests == 2 and len(result.accepted) == 10
    assert result.rejected == () and result.error is None
    assert len(sleeps) == 1
    everyone_once(sg, 10)


def test_a_connection_reset_is_retried(sg: SendGridServer, sleeps: Sleeps) -> None:
    sg.reset_next()

    result = sender_for(sg, sleeps).send_batch(make_batch(10))

    assert [r.status for r in sg.requests] == [None, 202]
    assert result.requests == 2 and len(result.accepted) == 10 and result.error is None
    everyone_once(sg, 10)


def test_a_request_taken_but_unanswered_repeats_only_its_own_recipients(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    # SendGrid took the second request and the answer was lost: the retry repeats exactly
    # that request's recipients (the documented in-flight case), nobody else.
    sg.on_request = lambda r: Fault(reset=True, deliver=True) if r.index == 2 else None
    sender = sender_for(sg, sleeps)
    sender.max_batch = 10

    result = sender.send_batch(make_batch(30))

    assert result.requests == 4 and len(result.accepted) == 30
    counts = sg.recipient_counts()
    assert {a for a, c in counts.items() if c == 2} == {
        f"reader{i}@example.com" for i in range(10, 20)}
    assert set(counts.values()) == {1, 2} and len(counts) == 30


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_permanent_refusals_are_not_retried_and_carry_sendgrids_message(
    status: int, sleeps: Sleeps
) -> None:
    batch = make_batch(20)
    server_options: dict[str, Any] = {"api_key": KEY}
    sender_options: dict[str, Any] = {}
    expected = ""
    if status == 400:  # the server's own validation: Reply-To is a reserved header
        batch = make_batch(20, headers={"Reply-To": "editor@example.org"})
        expected = "'Reply-To' is reserved"
    elif status == 401:
        sender_options["api_key"] = "SG.revoked"
        expected = "The provided authorization grant is invalid, expired, or revoked"
    elif status == 403:
        server_options["verified_senders"] = ["someone-else@example.org"]
        expected = "does not match a verified Sender Identity"
    else:
        server_options["max_bytes"] = 2_000
        expected = "too large"

    with SendGridServer(**server_options) as server:
        result = sender_for(server, sleeps, **sender_options).send_batch(batch)

        assert [r.status for r in server.requests] == [status]
        assert server.messages == []
    assert result.requests == 1 and sleeps == []
    assert result.accepted == ()
    if status in (401, 403):
        # The operator's key or sender is wrong, not the readers: they stay unsent, for later.
        assert result.rejected == ()
    else:
        assert result.rejected == tuple(r.to for r in batch.recipients)
    assert result.error is not None
    assert result.error.startswith(f"SendGrid {status}: ") and expected in result.error


def test_a_400_refuses_one_chunk_and_the_next_is_still_sent(
    sg: SendGridServer, sleeps: Sleeps
) -> None:
    sg.fail_next(status=400, message="Invalid substitution tag")

    result = sender_for(sg, sleeps).send_batch(make_batch(1500))

    assert result.requests == 2 and sleeps == []
    assert result.rejected == tuple(f"reader{i}@example.com" for i in range(1000))
    assert result.accepted == tuple(f"reader{i}@example.com" for i in range(1000, 1500))
    assert result.error == "SendGrid 400: Invalid substitution tag"
    assert len(sg.messages) == 500


def test_a_401_stops_the_batch(sleeps: Sleeps) -> None:
    with SendGridServer(api_key=KEY) as server:
        result = sender_for(server, sleeps, api_key="SG.wrong").send_batch(make_batch(1500))
        assert len(server.requests) == 1
    # Nobody is rejected for the operator's wrong key, and the rest were never attempted.
    assert result.rejected == () and result.accepted == ()
    assert result.requests == 1


def test_from_settings_sets_host_and_timeout() -> None:
    settings = Settings(mail_backend="sendgrid", sendgrid_api_key=KEY,
                        sendgrid_host="http://127.0.0.1:9", sendgrid_timeout=4.5,
                        sendgrid_max_attempts=2, mail_from="digest@example.org")
    sender = SendGridSender.from_settings(settings)
    assert sender.client.client.timeout == 4.5
    assert sender.client.client.host == "http://127.0.0.1:9"
    assert sender.max_attempts == 2
    assert sender.sender == {"email": "digest@example.org"}


def test_nothing_answering_is_a_transient_failure(sleeps: Sleeps) -> None:
    with SendGridServer() as server:
        url = server.url  # a port that is then closed again
    sender = SendGridSender(KEY, FROM, host=url, timeout=0.5, max_attempts=2, sleep=sleeps)
    result = sender.send_batch(make_batch(3))
    assert result.accepted == () and result.rejected == ()
    assert result.requests == 2 and len(sleeps) == 1
    assert result.error is not None and "unreachable" in result.error


# -- the server's own checks --------------------------------------------------------------


def post(server: SendGridServer, body: Any, api_key: str = KEY) -> tuple[int, dict[str, Any]]:
    """POST through the real client; (status, JSON body or {})."""
    client = sendgrid.SendGridAPIClient(api_key=api_key, host=server.url)
    client.client.timeout = 5
    try:
        response = client.client.mail.send.post(request_body=body)
    except HTTPError as exc:
        return exc.status_code, exc.to_dict
    assert response.body == b""
    return response.status_code, {"x-message-id": response.headers["X-Message-Id"]}


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
    ("duplicate across personalizations", _dup_across,
     "personalizations.1.to", "unique between to, cc, and bcc"),
    ("duplicate between to and bcc", _dup_to_bcc,
     "personalizations.0.bcc", "first duplicate instance of [r0@example.com]"),
    ("1001 personalizations", _too_many_personalizations,
     "personalizations", "at most 1000 personalizations"),
    ("1001 recipients", _too_many_recipients,
     "personalizations", "total number of recipients must be no more than 1000"),
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
]


@pytest.mark.parametrize(("mutate", "field", "message"),
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_server_refuses_what_sendgrid_refuses(
    sg: SendGridServer, mutate: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    body = valid(2)
    mutate(body)

    status, answer = post(sg, body)

    assert status == 400
    assert any(e["field"] == field and message in e["message"] for e in answer["errors"]), answer
    assert sg.messages == [] and [r.status for r in sg.requests] == [400]


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


def test_server_refuses_a_payload_over_its_size_limit_with_413() -> None:
    with SendGridServer(api_key=KEY, max_bytes=50_000) as server:
        body = valid(1)
        assert post(server, body)[0] == 202
        body["content"][0]["value"] = "x" * 60_000
        status, answer = post(server, body)
        assert status == 413 and "too large" in answer["errors"][0]["message"]
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


def test_server_without_recording_still_counts_recipients(sleeps: Sleeps) -> None:
    with SendGridServer(api_key=KEY, record=False) as server:
        result = sender_for(server, sleeps).send_batch(make_batch(1200))
        assert len(result.accepted) == 1200
        assert server.messages == [] and server.requests[0].payload is None
        assert [r.personalizations for r in server.requests] == [1000, 200]
        everyone_once(server, 1200)
