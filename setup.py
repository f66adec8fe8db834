"""The build step pyproject.toml cannot say: compile the gettext catalogs.

The `.po` files under newsletter/translations/ are the source (kept in git); a built
wheel, and an editable install, need the `.mo` files compiled from them
(newsletter/i18n.py). They are compiled beside their `.po` before the package's files are
copied, so package-data picks them up.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


def compile_catalogs(root: Path) -> None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in sorted(root.glob("newsletter/translations/*/LC_MESSAGES/*.po")):
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parts[-3], domain=po.stem)
        with po.with_suffix(".mo").open("wb") as target:
            write_mo(target, catalog, use_fuzzy=False)


class BuildWithCatalogs(build_py):
    def run(self) -> None:
        compile_catalogs(Path(__file__).resolve().parent)
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogs})
