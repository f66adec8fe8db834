"""The ledger and the send: every confirmed subscriber gets each edition exactly once.

An edition (`DigestEdition`) is one day's (or week's) digest run. Planning inserts one
`Delivery` row per (subscriber, edition) in a single set-based statement, under a unique
constraint, so planning twice plans nothing new. Senders claim rows with a conditional
UPDATE (a row moves from pending to sending under one claim token), so two workers never
take the same row; a row left in `sending` by a crashed worker is taken again after a
lease. A delivery is marked sent, with the papers it carried, right after the request that
sent it, whose outcome the send journal has kept first: a database outage mid-send costs
nobody a second copy. After a crash only the recipients of the request in flight can get
a second copy, and nobody is skipped. The papers carried (`SentPaper`, unique per
subscriber and paper) are why a paper never reaches the same reader twice.

- `ledger`: the tables, planning, claims, and what is recorded as sent, failed or skipped;
- `sources`: what a digest is made from (readers with their interests, the window's
  candidate papers);
- `edition`: an edition opened, planned, its "most read this week" frozen, and what is
  left to send cut into chunks;
- `send`: each chunk claimed, selected, composed, sent and recorded, in one process or
  several;
- `most_read`: "Most read this week", from the readers who went to a paper or rated it
  up, each counted once, shown only when enough of them did, naming nobody (the end of
  weekly digests, and the front page);
- `due` (pure) and `schedule`: each reader's digest at their own hour, in their zone;
  `send --due` and beat's tick plan the readers whose hour has come;
- `journal`: the send journal, each request's outcome on local disk before the ledger
  has it, so a send the database stopped is settled, not sent again;
- `views`: digests looked at, not sent (dry run, preview, view in browser).

What the rest of Paperwire uses is named here.
"""

from newsletter.delivery.edition import prepare_edition
from newsletter.delivery.ledger import (
    LEASE,
    Delivery,
    DigestEdition,
    SentPaper,
    SentPaperRow,
    already_sent,
    claim,
    lease,
    open_edition,
    plan,
    write_sent_papers,
)
from newsletter.delivery.schedule import (
    deliver_configured,
    prepare_configured,
    prepare_due_configured,
    send_due,
)
from newsletter.delivery.send import SendReport, composer_for, deliver, send_edition
from newsletter.delivery.views import PERSONAL_LINKS_PATH, digest_in_browser, dry_run, preview

__all__ = [
    "LEASE", "PERSONAL_LINKS_PATH", "Delivery", "DigestEdition", "SendReport", "SentPaper",
    "SentPaperRow", "already_sent", "claim", "composer_for", "deliver", "deliver_configured",
    "digest_in_browser", "dry_run", "lease", "open_edition", "plan", "prepare_configured",
    "prepare_due_configured", "prepare_edition", "preview", "send_due", "send_edition",
    "write_sent_papers",
]
