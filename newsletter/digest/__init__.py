"""The digest step: which papers each reader gets, in what order, and why.

- `selection`: a paper as a digest sees it (`Candidate`), a reader's `Interests`, and the
  rules: topic, keyword and author points, exclusions, the cut (pure);
- `reasons`: each reason as it is kept, and the "why" line a reader sees (pure);
- `rank`: a reader with a model is ranked by it, the rules nudging (pure);
- `scores`: `choose`, every reader's picks for an edition, rules or model, in chunks.

It reads the readers, the cards' topics and the models `relevance` trained; the mail step
turns its `Selection` into a message, and the delivery step sends and records it.
"""
