"""Settings from environment variables, validated once at start.

Production is the default. Development mode (`PAPERWIRE_DEV=1`, set by `newsletter demo`
and `make demo`) is the only mode that may run without SECRET_KEY (links are then signed
with the installation's own random key, kept in its database), over plain http, and with
the outbox viewer. A production start that lacks what it needs is refused with every
problem named at once.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Settings that are gone, refused (not ignored) so an old .env never sends at another hour.
RETIRED = {
    "DIGEST_HOUR_UTC": "DEFAULT_SEND_HOUR (an hour of DEFAULT_TIME_ZONE)",
    "DIGEST_SCHEDULE": "SEND_DUE_SCHEDULE (how often due digests are looked for)",
    "WEEKLY_DIGEST_SCHEDULE": "SEND_DUE_SCHEDULE, with WEEKLY_DIGEST_DAY",
}

DEFAULT_CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")
# Where papers may come from (SOURCES): arXiv's listing, and the two preprint servers
# api.biorxiv.org serves.
SOURCES = ("arxiv", "biorxiv", "medrxiv")
# OpenAI's embedding models and the most dimensions each can return
# (https://developers.openai.com/api/docs/guides/embeddings: 1536 and 3072; `dimensions`
# shortens them). Other names (OpenAI-compatible servers) are bounded by the largest.
EMBEDDING_SIZES = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
EMBEDDING_MAX_DIMENSIONS = max(EMBEDDING_SIZES.values())


class ConfigError(Exception):
    """The environment does not describe a runnable service."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, populate_by_name=True
    )

    database_url: str = "sqlite:///paperwire.db"
    redis_url: str | None = None
    secret_key: str | None = None
    dev_mode: bool = Field(default=False, alias="PAPERWIRE_DEV")
    # The public address readers use; https in production (links, cookies, form origin).
    base_url: str = "http://127.0.0.1:8000"

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    # Card writing: papers in flight at once, per-call timeout, calls per paper per run,
    # the longest single wait (a Retry-After beyond it is cut to it), the first backoff.
    llm_concurrency: int = Field(default=16, ge=1, le=256)
    llm_timeout: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    llm_max_wait: float = Field(default=60.0, ge=0)
    llm_backoff: float = Field(default=1.0, ge=0)
    # Runs in a row a card may fail before the sweep stops retrying it (until its text changes).
    llm_max_failures: int = Field(default=5, ge=1)
    # USD per million tokens, for models the built-in price table does not know (local: 0).
    llm_price_input: float | None = Field(default=None, ge=0)
    llm_price_output: float | None = Field(default=None, ge=0)
    # Paper vectors with an embeddings key (EMBEDDING_API_KEY, else OPENAI_API_KEY) from
    # EMBEDDING_BASE_URL (else OPENAI_BASE_URL), with the cards' LLM_* retry settings: the
    # embedding model and the size of its vectors. Changing either re-embeds. A separate
    # server lets the vectors come from a local embeddings server while cards do not.
    embedding_api_key: str | None = None
    embedding_base_url: str | None = None
    embedding_model: str = Field(default="text-embedding-3-small", min_length=1, max_length=150)
    embedding_dimensions: int = Field(default=256, ge=1, le=EMBEDDING_MAX_DIMENSIONS)
    # Paper vectors from a sentence-transformers model folder, run in-process (the `local`
    # extra): semantic vectors with no key and no server. It wins over an embeddings key,
    # which may be set for the cards alone.
    embedding_local_model: Path | None = None

    mail_backend: Literal["file", "console", "smtp", "sendgrid"] = "file"
    mail_from: str = "Paperwire <digest@localhost>"
    outbox_dir: Path = Path("outbox")
    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    # SendGrid: per-request timeout (its client has none by default), requests per batch
    # chunk including retries, and the longest single wait (a later X-RateLimit-Reset is cut).
    sendgrid_timeout: float = Field(default=30.0, gt=0)
    sendgrid_max_attempts: int = Field(default=5, ge=1, le=10)
    sendgrid_max_wait: float = Field(default=60.0, ge=0)
    # The digest's dynamic template on SendGrid (`newsletter sendgrid sync`), and whether a
    # send syncs it when it is missing or outdated (off: the send stops and says so).
    sendgrid_template_name: str = Field(default="paperwire-digest", min_length=1,
                                        max_length=80)
    sendgrid_template_sync: bool = True
    sendgrid_webhook_public_key: str | None = None
    # Engagement tracking by SendGrid, the operator's choice, off unless asked for: click
    # tracking rewrites every link of a digest to pass through SendGrid; open tracking adds
    # an invisible image whose loading reports an open (and Apple Mail loads it for every
    # mail, so opens say little). A reader who opted out gets neither (newsletter/mail/sendgrid.py).
    sendgrid_click_tracking: bool = False
    sendgrid_open_tracking: bool = False
    # Days a received provider event (the replay guard, with the address it names) is kept;
    # what it taught is kept only as counts (newsletter/engagement/).
    engagement_retention_days: int = Field(default=30, ge=1, le=3650)
    # Weekly digests end with the week's most read papers (the same list for every reader).
    digest_most_read: bool = True
    # "Most read this week" (the front page, weekly digests) lists a paper only when at least
    # this many readers went to it or rated it up, and at least this percent of the confirmed
    # readers: no one reader, or a handful, decides what everyone is shown
    # (newsletter/delivery/most_read.py).
    most_read_min_readers: int = Field(default=3, ge=2, le=1_000_000)
    most_read_min_percent: float = Field(default=1.0, ge=0, le=100)
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(default=30.0, gt=0)

    arxiv_categories: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CATEGORIES
    arxiv_rss_url: str = "https://rss.arxiv.org/rss/"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    # A reader's author feed is <this>/<author id or ORCID iD>.atom2
    # (https://info.arxiv.org/help/author_identifiers.html).
    arxiv_author_url: str = "https://arxiv.org/a"
    # The operator's topics, a TOML file (newsletter/topics/taxonomies/ml.toml says how it is
    # written); unset: the machine-learning taxonomy shipped with Paperwire.
    taxonomy_file: Path | None = None
    # Extra RSS/Atom sources: "label=url" pairs separated by commas.
    feed_urls: Annotated[tuple[str, ...], NoDecode] = ()
    http_timeout: float = Field(default=30.0, gt=0)
    http_retries: int = Field(default=4, ge=0, le=10)
    http_max_wait: float = Field(default=120.0, ge=0)
    arxiv_api_delay: float = Field(default=3.0, ge=0)
    # Where papers come from: arXiv's listing, and the preprint servers bioRxiv and medRxiv
    # through their API (api.biorxiv.org, newsletter/ingest/preprints.py).
    sources: Annotated[tuple[str, ...], NoDecode] = ("arxiv",)
    biorxiv_api_url: str = "https://api.biorxiv.org"
    # The API's subject categories to keep, as its pages name them ("cell biology"; written
    # cell_biology or cell-biology too); none: every category.
    biorxiv_categories: Annotated[tuple[str, ...], NoDecode] = ()
    medrxiv_categories: Annotated[tuple[str, ...], NoDecode] = ()
    # Days of postings read each time, today's included: a day's list grows until it ends, so
    # the next run reads yesterday again and catches its late postings.
    biorxiv_days: int = Field(default=2, ge=1, le=14)

    # A reader who chose no send time: this hour of their day in this IANA zone, weekly
    # readers on WEEKLY_DIGEST_DAY (newsletter/delivery/due.py).
    default_time_zone: str = "UTC"
    default_send_hour: int = Field(default=7, ge=0, le=23)
    # The languages a reader may pick for their cards (and, where Paperwire has a catalog
    # for it, their pages and mail: newsletter/i18n.py). English is always offered: cards
    # are written in it and translated once per paper and language some reader uses.
    card_languages: Annotated[tuple[str, ...], NoDecode] = ("en",)
    weekly_digest_day: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = "monday"

    # Beat schedules, UTC: a five-field cron line ("30 5,13,21 * * *") or an interval in
    # seconds ("90s"). arXiv's listing appears around 04:00-05:00 UTC: the 05:30 ingest has it.
    ingest_schedule: str = "30 5,13,21 * * *"
    summarize_schedule: str = "20,50 * * * *"
    # How often beat sends what has come due (`newsletter send --due`).
    send_due_schedule: str = "*/15 * * * *"
    expire_pending_schedule: str = "45 3 * * *"
    engagement_cleanup_schedule: str = "15 4 * * *"
    # How often mail queued while the broker was down is looked for (subscriptions/mail_queue.py).
    waiting_mail_schedule: str = "30s"
    # A delivery left `sending` by a dead worker is taken again after this many seconds;
    # it must outlast one chunk's send, or a slow live worker's rows would be sent twice.
    delivery_lease_seconds: int = Field(default=15 * 60, ge=1)
    # Deliveries per mail task: smaller chunks spread an edition over more mail workers.
    delivery_chunk_size: int = Field(default=1000, ge=1, le=1000)
    # The send journal: what the mail provider accepted, fsynced before the ledger records
    # it, so a database outage mid-send mails nobody twice (newsletter/delivery/journal.py).
    # Unset: `send-journal` beside OUTBOX_DIR. Every mail worker, and wherever
    # `newsletter send` runs, must see the same folder.
    send_journal_dir: Path | None = None
    # Redis broker: an unacknowledged task (its worker died) goes back to the queue after
    # this many seconds. Longer than the longest task, or a running task is handed out twice.
    broker_visibility_timeout: int = Field(default=2 * 3600, ge=1)

    # Sign-ups per client IP (Flask-Limiter syntax); counted in Redis when REDIS_URL is set.
    signup_rate_limit: str = "5/minute;30/hour"
    # Confirmation mails, whoever asks (limits syntax, counted like the above): per mailbox
    # (lower case, +tag and Gmail dots removed), per recipient domain, and in all per hour.
    # They stop mail-bombing one inbox through plus-addresses from many IPs.
    signup_mailbox_limit: str = "3/hour;6/day"
    signup_domain_limit: str = "300/hour"
    signup_mail_limit: str = "1000/hour"
    # How many reverse proxies (nginx, a load balancer) sit in front of the web app: their
    # X-Forwarded-For is then trusted for the client IP that rate limits and consent record.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # Where those proxies connect from: X-Forwarded-* from any other peer is ignored (a
    # client reaching the site directly could otherwise pick its own address, and with it
    # the key of every per-client limit). Loopback only by default: a proxy elsewhere (a
    # compose network, a load balancer) is named by the operator, never a whole private range.
    trusted_proxy_networks: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.0/8", "::1/128")
    # Days the admin audit log keeps a row; the beat task deletes older ones on
    # AUDIT_CLEANUP_SCHEDULE (newsletter/admin/audit.py).
    audit_retention_days: int = Field(default=365, ge=1, le=3650)
    audit_cleanup_schedule: str = "25 4 * * *"

    @field_validator("arxiv_categories", "feed_urls", "trusted_proxy_networks",
                     "card_languages", "sources", "biorxiv_categories", "medrxiv_categories",
                     mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxy_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for spec in value:
            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                raise ValueError(f"{spec!r} is not a network, e.g. 10.0.0.0/8") from None
        return value

    @field_validator("arxiv_categories")
    @classmethod
    def _check_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re

        bad = [c for c in value if not re.fullmatch(r"[a-z-]+(\.[A-Za-z-]+)?", c)]
        if bad:
            raise ValueError(f"not arXiv category names: {', '.join(bad)}")
        if not value:
            raise ValueError("name at least one category, e.g. cs.LG,cs.CL")
        return value

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(source.lower() for source in value))
        unknown = [source for source in chosen if source not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}: choose among "
                             f"{', '.join(SOURCES)}")
        if not chosen:
            raise ValueError("name at least one source, e.g. arxiv or arxiv,biorxiv")
        return chosen

    @field_validator("biorxiv_categories", "medrxiv_categories")
    @classmethod
    def _check_preprint_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The API names a category in lower-case words ("cell biology") and takes it with
        # underscores for the spaces (https://api.biorxiv.org/details/medrxiv/help): keep
        # the words, whichever way they were written.
        names = [" ".join(re.sub(r"[_-]", " ", name).lower().split()) for name in value]
        bad = [raw for raw, name in zip(value, names, strict=True)
               if not re.fullmatch(r"[a-z0-9][a-z0-9 /&'()]*", name)]
        if bad:
            raise ValueError(f"not category names: {', '.join(map(repr, bad))}; write them "
                             "as bioRxiv and medRxiv do, e.g. cell biology,neuroscience")
        return tuple(dict.fromkeys(names))

    @field_validator("feed_urls")
    @classmethod
    def _check_feeds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            label, sep, url = item.partition("=")
            if not sep or "://" in label:
                url = item
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"feed {item!r} is not label=http(s)://url")
        return value

    @field_validator("ingest_schedule", "summarize_schedule", "send_due_schedule",
                     "expire_pending_schedule", "audit_cleanup_schedule",
                     "engagement_cleanup_schedule", "waiting_mail_schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        schedule_spec(value)
        return value.strip()

    @field_validator("card_languages")
    @classmethod
    def _check_languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from babel import Locale, UnknownLocaleError

        chosen: list[str] = ["en"]
        for code in value:
            primary, _, rest = code.replace("_", "-").partition("-")
            tag = primary.lower() + (f"-{rest}" if rest else "")
            try:
                if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", tag):
                    raise ValueError
                Locale.parse(tag, sep="-")
            except (ValueError, UnknownLocaleError):
                raise ValueError(f"{code!r} is not a language code, e.g. en,fr,de,es,zh,ja"
                                 ) from None
            if tag not in chosen:
                chosen.append(tag)
        return tuple(chosen)

    @field_validator("default_time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. UTC, Europe/Paris "
                             "or America/Montreal") from None
        return value

    @field_validator("signup_rate_limit", "signup_mailbox_limit", "signup_domain_limit",
                     "signup_mail_limit")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("use rates like 5/minute;30/hour") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///path.db or postgresql://user:pass@host/db")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("openai_base_url", "embedding_base_url")
    @classmethod
    def _check_openai_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://localhost:8000/v1")
        return value or None

    @field_validator("embedding_model")
    @classmethod
    def _check_embedding_model(cls, value: str) -> str:
        if value != value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a model name, e.g. text-embedding-3-small")
        return value

    @field_validator("base_url", "sendgrid_host", "arxiv_rss_url", "arxiv_api_url",
                     "arxiv_author_url", "biorxiv_api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        # One line per problem, each naming its variable: one restart fixes them all.
        problems = [f"{name} is retired: each reader now gets their digest at their own hour; "
                    f"use {instead}" for name, instead in RETIRED.items() if os.environ.get(name)]
        if not self.dev_mode and not self.secret_key:
            problems.append("SECRET_KEY is required in production (the default mode): set it "
                            "to a long random string, or PAPERWIRE_DEV=1 for development")
        if not self.dev_mode and not self.base_url.startswith("https://"):
            problems.append(f"BASE_URL must be https in production, not {self.base_url}: "
                            "forms, cookies and signed links are served over TLS only "
                            "(or set PAPERWIRE_DEV=1 for development)")
        if self.embedding_base_url and not self.embeddings_key:
            problems.append("EMBEDDING_BASE_URL needs EMBEDDING_API_KEY (or OPENAI_API_KEY); "
                            "for a server that takes no key, any value will do")
        if self.embedding_local_model is not None:
            problems += self._local_model_problems(self.embedding_local_model)
        largest = EMBEDDING_SIZES.get(self.embedding_model)
        if largest is not None and self.embedding_dimensions > largest:
            problems.append(f"EMBEDDING_DIMENSIONS: {self.embedding_model} returns at most "
                            f"{largest} dimensions, not {self.embedding_dimensions}")
        if self.taxonomy_file is not None and not self.taxonomy_file.is_file():
            # What it says is checked where the topics are read, as each process starts
            # (newsletter/topics/taxonomy.py): the file is the topics' business.
            problems.append(f"TAXONOMY_FILE: {self.taxonomy_file} is not a file")
        if self.mail_backend == "sendgrid" and not self.sendgrid_api_key:
            problems.append("MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY")
        if self.send_journal.exists() and not self.send_journal.is_dir():
            problems.append(f"SEND_JOURNAL_DIR: {self.send_journal} is not a folder")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _local_model_problems(self, folder: Path) -> list[str]:
        # What the folder holds (a BERT encoder, its tokenizer, mean pooling) is checked
        # where the vector space is settled, once per process as it starts
        # (`relevance.embedders.space_for`): the model is the reader models' business.
        problems = []
        if not folder.is_dir():
            problems.append(f"EMBEDDING_LOCAL_MODEL: {folder} is not a folder")
        missing = missing_local_packages()
        if missing:
            problems.append(f"EMBEDDING_LOCAL_MODEL needs {' and '.join(missing)}: "
                            "pip install 'paperwire[local]'")
        if self.embedding_base_url:
            problems.append("EMBEDDING_LOCAL_MODEL and EMBEDDING_BASE_URL are both set: paper "
                            "vectors come from one of them; unset the other")
        return problems

    @property
    def default_weekday(self) -> str:
        """WEEKLY_DIGEST_DAY as a reader's weekday is kept: "mon" to "sun"."""
        return self.weekly_digest_day[:3]

    @property
    def send_journal(self) -> Path:
        """The send journal's folder: SEND_JOURNAL_DIR, or `send-journal` beside the outbox."""
        return self.send_journal_dir or self.outbox_dir.parent / "send-journal"

    @property
    def embeddings_key(self) -> str | None:
        """The key paper vectors are fetched with; without one they are computed offline."""
        return self.embedding_api_key or self.openai_api_key

    @property
    def embeddings_url(self) -> str | None:
        return self.embedding_base_url or self.openai_base_url

    @property
    def embedding_dimensions_asked(self) -> bool:
        """Whether requests name the dimensions: OpenAI takes `dimensions` for its
        text-embedding-3 models only and refuses it for others ("This model does not
        support specifying dimensions"), as compatible servers may; other models must be
        configured at the size they return (https://developers.openai.com/api/reference/
        resources/embeddings)."""
        return self.embedding_model in EMBEDDING_SIZES

    @property
    def extra_feeds(self) -> list[tuple[str, str]]:
        """(label, url) for each FEED_URLS entry; the label defaults to the host."""
        from urllib.parse import urlsplit

        feeds = []
        for item in self.feed_urls:
            label, sep, url = item.partition("=")
            if not sep or "://" in label:
                label, url = "", item
            feeds.append((label or urlsplit(url).hostname or "feed", url))
        return feeds


def missing_local_packages() -> list[str]:
    """What the `local` extra installs that this environment lacks (EMBEDDING_LOCAL_MODEL)."""
    return [name for name in ("tokenizers", "safetensors") if find_spec(name) is None]


def schedule_spec(value: str) -> float | tuple[str, ...]:
    """A schedule setting as seconds between runs, or as cron's five fields (minute hour
    day-of-month month day-of-week). Raises ValueError naming the accepted forms."""
    import re

    text = value.strip()
    interval = re.fullmatch(r"(\d+(?:\.\d+)?)\s*s", text)
    if interval:
        seconds = float(interval.group(1))
        if seconds <= 0:
            raise ValueError("an interval must be more than 0 seconds")
        return seconds
    fields = tuple(text.split())
    if len(fields) != 5:
        raise ValueError(f"{value!r} is neither a cron line like '30 5,13,21 * * *' "
                         "nor an interval like '90s'")
    from celery.schedules import crontab

    try:  # celery parses each field as beat will: a typo fails here, not at 05:30
        crontab(*fields)
    except Exception as exc:
        raise ValueError(f"{value!r} is not a valid cron line: {exc}") from None
    return fields


def load_settings() -> Settings:
    """Read the environment; raise ConfigError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # the checks across variables name their own
                lines.extend(f"  {line}" for line in message.splitlines())
                continue
            name = "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
