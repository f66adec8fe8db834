"""A reader's arXiv author identifier or ORCID iD, as they would paste it. Pure.

arXiv gives each registered author a public identifier, such as `grapa_j_1`, whose page
is https://arxiv.org/a/grapa_j_1; an author who linked their ORCID iD to arXiv gets the
same page and feeds under the iD (https://arxiv.org/a/0000-0002-1825-0097). See arXiv's
help page on author identifiers: https://info.arxiv.org/help/author_identifiers.html.
A reader may paste either, bare or as a link (arxiv.org/a/..., orcid.org/...), and we keep
the identifier alone, the part that names their feed.
"""

from __future__ import annotations

import re

from newsletter.i18n import gettext as _

MAX_LENGTH = 64
# surname_initials_number: letters, digits and hyphens between underscores, as arXiv
# makes them (lower case), ending with the number that tells namesakes apart.
_ARXIV_AUTHOR = re.compile(r"^[a-z][a-z0-9-]*(?:_[a-z0-9-]+)*_\d+$")
_ORCID = re.compile(r"^(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])$")
_LINK = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:arxiv\.org/a/|orcid\.org/)(?P<id>[^/?#]+?)"
    r"(?:\.(?:html|atom2?|json))?/?(?:[?#].*)?$", re.IGNORECASE)


def orcid_checksum_ok(digits: str) -> bool:
    """ISO 7064 MOD 11-2 over the first 15 digits gives the 16th (X for 10), as ORCID
    specifies (https://support.orcid.org/hc/en-us/articles/360006897674): a mistyped
    digit is caught before arXiv is ever asked."""
    total = 0
    for digit in digits[:15]:
        total = (total + int(digit)) * 2
    check = (12 - total % 11) % 11
    return digits[15] == ("X" if check == 10 else str(check))


def author_id_of(raw: str | None) -> str | None:
    """The identifier a reader pasted, as their arXiv feed names it: `grapa_j_1`, or an
    ORCID iD as 0000-0002-1825-0097. None when nothing was given; ValueError with a
    sentence for the reader when it is neither."""
    value = (raw or "").strip()
    if not value:
        return None
    if len(value) > 200:
        raise ValueError(_("That is too long to be an arXiv author identifier or an ORCID iD."))
    link = _LINK.match(value)
    if link:
        value = link.group("id")
    orcid = _ORCID.match(value.upper())
    if orcid:
        digits = "".join(orcid.groups())
        if not orcid_checksum_ok(digits):
            raise ValueError(_("%(value)s is not a valid ORCID iD: its last digit does not "
                               "match. Copy it from your ORCID record.", value=value))
        return "-".join(orcid.groups())
    lowered = value.lower()
    if len(lowered) <= MAX_LENGTH and _ARXIV_AUTHOR.match(lowered):
        return lowered
    raise ValueError(_("Give your arXiv author identifier (like grapa_j_1, from "
                       "arxiv.org/a/grapa_j_1) or your ORCID iD (like 0000-0002-1825-0097)."))
