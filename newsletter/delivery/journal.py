"""The send journal: what the mail provider was asked and answered, kept on local disk
until the ledger has it.

Why: the ledger lives in the database, and a request the provider accepted while the
database was away (stopped, full, read-only) was recorded nowhere. Its rows stayed
`sending`, and once their lease ran out the next send mailed them again: a 15-second
Postgres outage mailed 1,502 readers twice (docs/SECURITY.md, issue 22). Now each accepted
request is written here, and fsynced, before the ledger is told; the send stops at the
first outcome it cannot record; and the rows it left are settled from here, not sent again.

One file per claim (a chunk's rows under one claim token), in SEND_JOURNAL_DIR:
`<database>-<edition>-<claim>.jsonl`, where `<database>` is a hash of the database's
address, so two installations sharing a folder never settle each other's sends. It is
append-only JSON, a line per entry, each fsynced before the send goes on:

    {"claim": "9f..", "edition": 12}                           opened, before the claim
    {"request": [delivery ids]}                                before each request
    {"answer": [[delivery id, subscriber id, more, [[paper id, score, reasons], ..]], ..],
     "refused": [delivery ids], "error": null, "message_id": "..", "at": "2026-..Z"}
                                                               after it

The process sending a claim holds an exclusive lock (flock) on its file from before the
file has its name until the send is over; a clean end deletes the file (the ledger then has
everything). A file nobody holds was left by a send that stopped: `settle_abandoned`, run
before every claim and by every `newsletter send`, records it:
- readers of an answer's accepted list: sent, at the answer's time, with the papers they got;
- refused ones: failed, with the provider's error;
- readers of a request with no answer (the journal could not be written, or the process
  died, between the request and its answer): left `sending`, in doubt. At most one
  request's readers of a claim can be, since nothing is sent after a request whose answer
  was not kept. Their lease runs out as before, and they are sent again.
- the claim's other rows, never requested: pending again, for the next send.
A line cut short by a crash is ignored: an answer never finished is a request in doubt, a
request never finished was never made.

Every mail worker and every `newsletter send` of an installation must see the same folder
(docker-compose: the `appdata` volume). A claim whose file is out of sight is settled, as
before, by its lease: its accepted readers would be sent again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.delivery.ledger import SentDigest, held, mark_failed, mark_sent, take_back

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


class JournalError(OSError):
    """The send journal cannot be written: nothing more is sent until it can."""


def database_key(engine: Engine) -> str:
    """Which database a journal file belongs to, without its password."""
    address = engine.url.render_as_string(hide_password=True)
    return hashlib.sha256(address.encode()).hexdigest()[:12]


class Journal:
    """One claim's file, open and locked by the process sending the claim.

    Used as a context manager: a clean exit deletes the file (every outcome is in the
    ledger); an exception leaves it, unlocked, for `settle_abandoned`.
    """

    def __init__(self, folder: Path, fd: int, path: Path) -> None:
        self.folder, self._fd, self.path = folder, fd, path

    @classmethod
    def open(cls, folder: Path, engine: Engine, edition_id: int, token: str) -> Journal:
        name = f"{database_key(engine)}-{edition_id}-{token}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Locked before it has the name others look for: nobody settles a live claim.
            unnamed = folder / f".{name}.tmp"
            fd = os.open(unnamed, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise JournalError(f"cannot write the send journal in {folder}: {exc}") from exc
        journal = cls(folder, fd, folder / f"{name}{SUFFIX}")
        try:
            journal._write({"claim": token, "edition": edition_id})
            os.replace(unnamed, journal.path)
            _sync_folder(folder)
        except OSError as exc:
            journal.close()
            unnamed.unlink(missing_ok=True)
            raise JournalError(f"cannot write the send journal in {folder}: {exc}") from exc
        return journal

    def request(self, delivery_ids: Sequence[int]) -> None:
        self._write({"request": list(delivery_ids)})

    def answer(self, accepted: Sequence[SentDigest], refused: Sequence[int],
               error: str | None, message_id: str | None, at: datetime) -> None:
        self._write({"answer": [d.as_json() for d in accepted], "refused": list(refused),
                     "error": error, "message_id": message_id,
                     "at": at.astimezone(UTC).isoformat()})

    def _write(self, entry: dict[str, Any]) -> None:
        data = memoryview(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot write the send journal {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the lock goes with it
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if kind is None:
            # Every outcome is in the ledger: nothing left to settle.
            self.path.unlink(missing_ok=True)
        self.close()


def _sync_folder(folder: Path) -> None:
    """A new name survives a power cut only once its folder is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading back


@dataclass
class Claim:
    """What one journal file says happened to its claim."""

    token: str
    edition_id: int
    requested: list[int] = field(default_factory=list)
    answered: set[int] = field(default_factory=set)
    accepted: list[tuple[datetime, list[SentDigest]]] = field(default_factory=list)
    refused: list[tuple[str, list[int]]] = field(default_factory=list)
    last_error: str | None = None

    @property
    def in_doubt(self) -> set[int]:
        """Requested, with no answer kept: the provider may or may not have them."""
        return set(self.requested) - self.answered

    @property
    def accepted_ids(self) -> set[int]:
        return {d.delivery_id for _, sent in self.accepted for d in sent}


def read_claim(text: str) -> Claim | None:
    """A journal file's entries; None for a file whose first line never got written."""
    claim: Claim | None = None
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            break  # cut short by a crash: nothing after it was written either
        if claim is None:
            claim = Claim(str(entry["claim"]), int(entry["edition"]))
        elif "request" in entry:
            claim.requested += entry["request"]
        elif "answer" in entry:
            sent = [SentDigest.from_json(d) for d in entry["answer"]]
            claim.accepted.append((datetime.fromisoformat(entry["at"]), sent))
            claim.refused.append((entry["error"] or "refused", list(entry["refused"])))
            # Requests go one at a time: an answer settles every request before it. Its
            # readers neither accepted nor refused were not sent (the provider down).
            claim.answered |= set(claim.requested)
            claim.last_error = entry["error"] or claim.last_error
    return claim


def settle(session: Session, claim: Claim) -> int:
    """Record what a stopped send's journal says; the readers recorded sent are counted.

    Only rows the claim still holds are touched (and accepted ones nobody holds, whose
    claim the database lost): a row it recorded before it stopped, or one taken by
    another claim since, is left as it is.
    """
    take_back(session, claim.token, sorted(claim.accepted_ids))
    holding = held(session, claim.token, lock=True)
    recorded = 0
    for at, sent in claim.accepted:
        mine = [d for d in sent if d.delivery_id in holding]
        mark_sent(session, claim.token, mine, at)
        recorded += len(mine)
    for error, refused in claim.refused:
        mark_failed(session, claim.token, [i for i in refused if i in holding], error,
                    permanent=True)
    doubt = claim.in_doubt & holding
    unsent = holding - claim.accepted_ids - doubt - {i for _, r in claim.refused for i in r}
    if unsent:
        mark_failed(session, claim.token, sorted(unsent),
                    claim.last_error or "not sent: its send stopped before their request",
                    permanent=False)
    if doubt:
        log.warning("send journal: %d readers of edition %d in doubt (claim %s): a request "
                    "was made and its answer not kept; they are sent again once the lease "
                    "runs out", len(doubt), claim.edition_id, claim.token)
    return recorded


def _abandoned(folder: Path, engine: Engine) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{database_key(engine)}-*{SUFFIX}"))


def settle_abandoned(engine: Engine, folder: Path) -> int:
    """Settle every journal file of this database that no live send holds, and delete it.
    Returns the readers recorded sent from the journal."""
    recorded = 0
    for path in _abandoned(folder, engine):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its send ended meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a send still running holds it
            if os.fstat(fd).st_nlink == 0:
                continue  # settled, or finished, while we waited for it
            claim = read_claim(path.read_text(encoding="utf-8"))
            if claim is not None:
                with Session(engine) as session:
                    done = settle(session, claim)
                    session.commit()
                recorded += done
                log.info("send journal: claim %s of edition %d settled, %d readers recorded "
                         "sent from it", claim.token, claim.edition_id, done)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return recorded


def accepted_waiting(engine: Engine, folder: Path) -> int:
    """Readers the provider accepted that only the journal knows of yet (for `status`):
    reads, changes nothing."""
    waiting = 0
    for path in _abandoned(folder, engine):
        try:
            claim = read_claim(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        if claim is not None:
            with Session(engine) as session:
                waiting += len(claim.accepted_ids & held(session, claim.token, lock=False))
    return waiting
