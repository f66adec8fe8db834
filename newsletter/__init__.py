"""Paperwire: arXiv papers in, personal email digests out."""

__version__ = "0.1.0"
