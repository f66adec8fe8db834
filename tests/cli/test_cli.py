"""The `newsletter` command as an operator uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from newsletter import db
from newsletter.cli import main
from newsletter.topics.taxonomy import built_in
from tests.conftest import ARXIV_FIXTURES, LOCAL_FIXTURES, arxiv_fixture
from tests.support.servers import Postgres, free_port

REQUIRED = {"arxiv_id", "version", "title", "authors", "categories", "primary_category",
            "announce_type", "announced_on", "abs_url", "pdf_url", "code_url"}


def run(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url, **env})


def test_ingest_files_then_list_papers_as_json(database_url: str) -> None:
    paths = [str(p) for p in sorted(ARXIV_FIXTURES.glob("rss_*.xml"))]
    result = run(database_url, "ingest", "--file", paths[0], *paths[1:])
    assert result.exit_code == 0, result.output
    assert "rss_cs.AI_2026-04-27.xml: 3 items, 3 new" in result.stderr
    assert result.stdout.strip() == (
        "ingest: 4 feeds, 13 items; papers 13 new, 0 updated, 0 unchanged; 0 errors"
    )

    listed = json.loads(run(database_url, "papers", "--json").stdout)
    assert len(listed) == 13
    assert all(paper.keys() >= REQUIRED for paper in listed)

    day = json.loads(run(database_url, "papers", "--json", "--date", "2026-09-24").stdout)
    assert {p["arxiv_id"]: p["announce_type"] for p in day} == {
        "2609.26811": "new", "2609.26820": "new", "2205.06398": "cross", "2009.13987": "replace",
    }
    replaced = next(p for p in day if p["arxiv_id"] == "2009.13987")
    assert replaced["version"] == 3
    assert replaced["authors"] == ["Michael Joswig", "Marek Kaluba", "Lukas Ruff"]


def test_feeds_shows_errors_and_empty_days(database_url: str) -> None:
    run(database_url, "ingest", "--file", str(arxiv_fixture("api_error_400.xml")),
        str(LOCAL_FIXTURES / "rss_weekend_2026-09-26.xml"))
    shown = run(database_url, "feeds").stdout
    assert "error: arXiv API error: incorrect id format for abc" in shown
    assert "state no_announcement" in shown
    statuses = json.loads(run(database_url, "feeds", "--json").stdout)
    assert {f["state"] for f in statuses} == {"error", "no_announcement"}


def test_every_file_failing_exits_non_zero(database_url: str) -> None:
    result = run(database_url, "ingest", "--file", str(LOCAL_FIXTURES / "malformed.xml"))
    assert result.exit_code == 1
    assert "ERROR malformed feed at line 43" in result.stderr


def test_bad_arguments_are_usage_errors(database_url: str) -> None:
    assert "--backfill needs --since" in run(database_url, "ingest", "--backfill").output
    bad_date = run(database_url, "papers", "--date", "24/09/2026")
    assert bad_date.exit_code == 2 and "not a date like 2026-09-24" in bad_date.output


def test_invalid_configuration_names_each_variable(database_url: str) -> None:
    result = run(database_url, "papers", DEFAULT_SEND_HOUR="25", ARXIV_CATEGORIES="cs.LG,not a cat")
    assert result.exit_code == 1
    assert "DEFAULT_SEND_HOUR" in result.output and "ARXIV_CATEGORIES" in result.output
    assert "not arXiv category names: not a cat" in result.output


def test_secret_key_is_required_outside_dev_mode(database_url: str) -> None:
    result = run(database_url, "papers", PAPERWIRE_DEV="0")
    assert result.exit_code == 1 and "SECRET_KEY is required" in result.output


def test_demo_falls_back_to_the_shipped_samples_when_arxiv_is_unreachable(
    database_url: str, tmp_path: Path,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/rss/"
    result = run(database_url, "demo", "--no-serve", ARXIV_RSS_URL=closed,
                 OUTBOX_DIR=str(tmp_path / "outbox"))
    assert result.exit_code == 0, result.output
    assert "using the sample feeds shipped with Paperwire" in result.stderr
    assert "3 new papers and 1 revised on 2026-09-24 (from the shipped samples):" in result.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    assert "The Drift Contract: Spectral Updates" in result.stdout


@pytest.mark.postgres
def test_postgres_must_be_migrated_explicitly(pg: Postgres) -> None:
    admin = db.make_engine(pg.url("postgres")).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE paperwire_unmigrated"))
    admin.dispose()
    url = pg.url("paperwire_unmigrated")
    refused = run(url, "papers")
    assert refused.exit_code == 1 and "run `newsletter db upgrade`" in refused.output
    upgraded = run(url, "db", "upgrade")
    assert upgraded.exit_code == 0 and "(was empty)" in upgraded.stdout
    assert run(url, "papers").stdout.strip() == "0 papers"


def test_rate_names_a_paper_we_do_not_have_and_blames_only_real_syntax(
    database_url: str,
) -> None:
    paths = [str(p) for p in sorted(ARXIV_FIXTURES.glob("rss_*.xml"))]
    assert run(database_url, "ingest", "--file", *paths).exit_code == 0
    assert run(database_url, "subscribers", "add", "ann@example.org", "--topics", "llm",
               "--confirmed").exit_code == 0
    # Shaped like an arXiv id, though none can have month 99: a paper we do not have.
    for args, unknown in ((["9999.99999=up"], "9999.99999"),
                          (["2609.26811=up", "https://arxiv.org/abs/9999.99999v2=down",
                            "2401.00001=clear"], "9999.99999, 2401.00001")):
        result = run(database_url, "rate", "ann@example.org", *args)
        assert result.exit_code == 2, result.output
        assert f"no stored paper {unknown} (papers arrive by `newsletter ingest`)" \
            in result.stderr
        assert "is not ARXIV_ID=up|down|clear" not in result.stderr
    # What is not ARXIV_ID=up|down|clear is still called so.
    for bad in ("9999.99999", "hello=up", "=up"):
        result = run(database_url, "rate", "ann@example.org", bad)
        assert result.exit_code == 2, bad
        assert f"'{bad}' is not ARXIV_ID=up|down|clear (e.g. 2401.12345=up)" in result.stderr
    # The stored paper on its own is rated.
    result = run(database_url, "rate", "ann@example.org", "2609.26811=up")
    assert result.stdout.strip() == "rate: ann@example.org: 1 up; model trained on 1 ratings"


def test_unknown_topics_are_named_with_the_topics_there_are(
    database_url: str, tmp_path: Path,
) -> None:
    every_slug = f"the topics are {', '.join(built_in().slugs)}."
    result = run(database_url, "subscribers", "add", "ann@example.org",
                 "--topics", "llm,nosuch,Other", "--confirmed")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: topics: No topic 'nosuch', 'other'; {every_slug}"
    # An import's CSV is typed by hand too; nothing of the file is imported.
    csv = tmp_path / "readers.csv"
    csv.write_text("email,topics\nbo@example.org,llm;nlp\ncy@example.org,ml\n", "utf-8")
    result = run(database_url, "subscribers", "import", str(csv), "--confirmed")
    assert result.exit_code == 1
    assert f"line 3: No topic 'ml'; {every_slug}" in result.stderr
    assert json.loads(run(database_url, "subscribers", "--json").stdout) == []
