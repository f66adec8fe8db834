"""Paperwire: arXiv papers in, personal email digests out."""

from pathlib import Path

__version__ = "0.1.0"

# Data folders that stand at the repository's top level, as the brief names them, and that
# the build maps into the package (pyproject's package-dir): the name each has inside it.
_TOP_LEVEL = {"email_templates": "email_templates", "migrations": "alembic"}


def shipped(folder: str) -> Path:
    """`email_templates` or `migrations`: inside an installed wheel they lie beside this
    file; in a source checkout (editable installs included) at the top level."""
    here = Path(__file__).resolve().parent
    inside = here / folder
    return inside if inside.is_dir() else here.parent / _TOP_LEVEL[folder]
