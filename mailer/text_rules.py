"""Which characters written text may hold: one-line values may reach a mail header, so no line
break of any kind (every character ``str.splitlines()`` breaks on); no text holds other control
characters or unpaired surrogates, which no mail or database can carry."""

from __future__ import annotations

import re
import unicodedata

# The C0 and C1 controls (this includes \n \r \v \f \x1c-\x1e \x85), the Unicode line and
# paragraph separators, and the surrogates that only a broken encoding leaves unpaired.
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _named(char: str) -> str:
    """The character as an editor can find it (" (U+2028 LINE SEPARATOR)"), unless it is the
    line feed or carriage return everyone can see."""
    if char in "\r\n":
        return ""
    name = unicodedata.name(char, "")
    return f" (U+{ord(char):04X}{' ' + name if name else ''})"


def _problem(char: str, *, one_line: bool) -> str:
    """What is wrong with one refused character."""
    if one_line and char in LINE_BREAKS:
        return f"must be a single line: remove the line break{_named(char)}"
    if unicodedata.category(char) == "Cs":
        return f"must not contain unpaired surrogates{_named(char)}"
    return f"must not contain control characters{_named(char)}"


def line_problem(text: str) -> str | None:
    """Why ``text`` cannot be a one-line value (a subject, a title, a URL), or None if it can."""
    found = _NOT_ONE_LINE.search(text)
    return _problem(found.group(), one_line=True) if found else None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be multi-line prose (line feeds and tabs allowed), or None if it can."""
    found = _NOT_TEXT.search(text)
    return _problem(found.group(), one_line=False) if found else None
