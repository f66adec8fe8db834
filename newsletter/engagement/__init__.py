"""Engagement: what readers did with their digests, kept as counts, and what it tells them.

- `links`: which paper a clicked URL opens (pure);
- `events`: what a SendGrid event changes (a delivery's first delivered, opened, clicked
  and bounced times; the first click on each paper it carried; a reader's last
  activity), and the retention of the received events themselves;
- `most_read`: "Most read this week", from the readers who went to a paper or rated it up,
  each counted once, shown only when enough of them did, naming nobody (the front page,
  and the end of weekly digests).

Tracking is the operator's choice (SENDGRID_CLICK_TRACKING, SENDGRID_OPEN_TRACKING, both
off by default) and each reader's: one who opts out on the manage page is mailed with
tracking off, and any event about them is dropped but for suppression.
"""

from newsletter.engagement.events import Recorder, forget_old_events, forget_old_events_configured
from newsletter.engagement.links import paper_key
from newsletter.engagement.most_read import Audience, MostRead, most_read

__all__ = ["Audience", "MostRead", "Recorder", "forget_old_events",
           "forget_old_events_configured", "most_read", "paper_key"]
