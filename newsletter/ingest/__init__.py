"""The ingest step: announcements become papers, each work stored once.

- `fetch`: polite HTTP (timeouts, conditional GET, backoff honouring Retry-After);
- `parse`: an arXiv or RSS/Atom document becomes paper entries (pure), or a clear
  `FeedError`; `biorxiv`: a page of api.biorxiv.org's details, likewise (pure); `text`:
  HTML fragments, wrapped lines and author lists made plain (pure);
- `paper`: the papers table, and how an entry changes a stored paper (pure `merge`);
- `identity` and `same_work`: which entries are the same work (pure keys), and how one
  that another source announced first joins that paper as an alias;
- `feed`: each feed and its last fetch's status;
- `store`: parse and store each document in one transaction; `preprints`: bioRxiv and
  medRxiv page by page; `run`: every configured source, as the scheduled job reads them.

Nothing here knows cards, readers or mail: every later step reads `paper.Paper`.
"""
