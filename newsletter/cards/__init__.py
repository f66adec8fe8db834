"""The cards step: each paper gets one card (topics, key points, summary, methodology,
results, implications), written once and kept.

- `card`: the card's schema (pydantic) and its table, one row per paper;
- `prompt`: the prompt and its version, stored on every card;
- `llm_writer`: a card per call to an OpenAI-compatible endpoint, checked and costed
  (`price`: what tokens cost);
- `offline_writer`: a card from the abstract's own sentences, with no model at all;
- `pool`: many calls at once, their results handed back in batches as they finish;
- `summarize`: pending papers into cards, many at once, each result stored, then the
  sweep's translations;
- `translation` and `translate`: a card in each language readers use, once per paper and
  language (`translation_table`: their rows); `translations_for` is what may be shown;
- `archive`: the day pages' read side, papers with their cards (in the reader's language
  where translated) as plain values.

It reads the ingest step's papers and the shared `taxonomy`; nothing here knows readers:
the languages to translate into are the caller's word.
"""
