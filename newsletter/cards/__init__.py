"""The cards step: each paper gets one card (topics, key points, summary, methodology,
results, implications), written once and kept.

- `card`: the card's schema (pydantic) and its table, one row per paper;
- `prompt`: the prompt and its version, stored on every card;
- `llm_writer`: a card per call to an OpenAI-compatible endpoint, checked and costed
  (`price`: what tokens cost);
- `offline_writer`: a card from the abstract's own sentences, with no model at all;
- `summarize`: pending papers into cards, many at once, each result stored;
- `archive`: the day pages' read side, papers with their cards as plain values.

It reads the ingest step's papers and the shared `taxonomy`; nothing here knows readers.
"""
