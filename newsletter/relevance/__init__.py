"""Relevance: learning what each reader wants, at a cost that grows with papers, not readers.

The story runs in three steps, one module each:

1. `vectors`: every paper becomes a unit-length vector once (a fixed hashed TF-IDF space
   that never needs refitting; with a local model, `local_model`, its vectors beside those
   words; or OpenAI embeddings with a key), stored compactly.
2. `model`: a reader's own words, the papers they like and their up/down ratings become a
   small linear model in the same space (a few KB: its strongest weights only).
3. `model.affinities`: one sparse matrix product scores a whole chunk of readers against the
   day's papers; `model.blend` mixes that with the topic, keyword and author points into
   the 0-100 score a digest ranks by, and `model.unsure` picks the papers a rating would
   teach the model most about.

`embedders` (the offline space, a local model, OpenAI), `embed` and `learn` are the I/O
around them: making and storing paper vectors, ratings and models.
"""
