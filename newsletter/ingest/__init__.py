"""The ingest step: arXiv's announcements become papers, each stored once.

- `fetch`: polite HTTP (timeouts, conditional GET, backoff honouring Retry-After);
- `parse`: a feed document becomes paper entries (pure), or a clear `FeedError`; `text`:
  its HTML fragments, wrapped lines and author lists made plain (pure);
- `paper`: the papers table, and how an entry changes a stored paper (pure `merge`);
- `feed`: each feed and its last fetch's status;
- `store`: fetch, parse and store each feed in one transaction.

Nothing here knows cards, readers or mail: every later step reads `paper.Paper`.
"""
