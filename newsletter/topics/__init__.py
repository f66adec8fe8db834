"""Topics: the operator's taxonomy (`taxonomy`), who still uses which topic (`in_use`), and
the offline tagger that files a paper under them without an LLM (`tagger`)."""
