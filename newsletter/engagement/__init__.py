"""Engagement: what readers did with their digests, as the mail provider reports it.

- `links`: which paper a clicked URL opens (pure);
- `events`: what a SendGrid event changes (a delivery's first delivered, opened, clicked
  and bounced times; the first click on each paper it carried; a reader's last
  activity), and the retention of the received events themselves;
- `webhook`: SendGrid's Event Webhook: the signature, the parsing, and what each event
  changes (a bounce or a complaint suppresses the address).

Tracking is the operator's choice (SENDGRID_CLICK_TRACKING, SENDGRID_OPEN_TRACKING, both
off by default) and each reader's: one who opts out on the manage page is mailed with
tracking off, and any event about them is dropped but for suppression.
"""

from newsletter.engagement.events import Recorder, forget_old_events, forget_old_events_configured
from newsletter.engagement.links import paper_key

__all__ = ["Recorder", "forget_old_events", "forget_old_events_configured", "paper_key"]
