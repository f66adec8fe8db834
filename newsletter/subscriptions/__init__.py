"""What a reader does with their subscription, each in one transaction, and what it mails.

- `signup`: sign up, confirm, the operator's additions and imports, the provider's events;
- `services`: what the flows need from outside (settings, database, sender, links,
  limits, the mail queue), and the mail a reader asked for (confirmation, welcome,
  already subscribed), made and sent after the answer;
- `mail_queue`: how that mail leaves a web request: through the broker, or kept in the
  database while the broker is down;
- `signup_limits`: sign-ups and mails counted per address and network, in the database;
- `reader_account`: the manage page (interests, ratings, tracking), unsubscribe,
  re-subscribe;
- `rating`: "more like this" and "less like this" on a paper, and the model retrained;
- `privacy`: everything held about a reader exported, or erased.

Flask views and Celery tasks call one function here each. This step sits above the mail,
the digest and the reader models, which it uses, and nothing below it knows it.
"""
