"""Words of a message: admin Markdown made safe, text parts wrapped, HTML lines kept short."""

from __future__ import annotations

import functools
import html as html_lib
import re
import textwrap
from typing import Any

import css_inline
import markdown as markdown_lib
import nh3
from flask import render_template
from markupsafe import Markup

# Body lines are wrapped well below SMTP's 998 so substituted links never push one over.
MAX_BODY_LINE = 700
TEXT_WIDTH = 72
# Where admin-written links may point; see link_target.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})

_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
_MARKDOWN_TAGS = {
    "a",
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "h2",
    "h3",
    "h4",
    "hr",
}
_URL_INVISIBLE = re.compile("[\t\n\r]")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LINK = re.compile(r'<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>', re.S)
_BLOCK_END = re.compile(r"</(p|h[1-6]|ul|ol|blockquote|pre)>|<hr\s*/?>", re.I)


def render_markdown(text: str) -> Markup:
    """Markdown to safe HTML: only harmless tags, links only to http, https and mailto.

    The text is never evaluated as a template; raw HTML in it is sanitised like the rest.
    """
    return Markup(_clean_markdown(text or ""))


@functools.lru_cache(maxsize=512)
def _clean_markdown(text: str) -> str:
    """Markdown to sanitised HTML, remembered: the same notes recur in every message of a batch."""
    raw = markdown_lib.markdown(text, output_format="html")
    return nh3.clean(
        raw,
        tags=_MARKDOWN_TAGS,
        attributes={"a": {"href", "title"}},
        attribute_filter=_safe_link,
        url_schemes=LINK_SCHEMES,
        link_rel="noopener noreferrer",
    )


def link_target(url: str) -> str | None:
    """The URL as a browser reads it, if it is an absolute http, https or mailto link, else None.

    The WHATWG URL parser strips leading and trailing C0 controls and spaces and drops every tab
    and newline, so " java\tscript:" is "javascript:". Relative links are refused too: a mail has
    no base to resolve them against.
    """
    cleaned = _URL_INVISIBLE.sub("", url.strip("".join(map(chr, range(0x21)))))
    scheme = _URL_SCHEME.match(cleaned)
    if scheme is None or scheme.group(1).lower() not in LINK_SCHEMES:
        return None
    return cleaned


def _safe_link(element: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: an href (entities already decoded) only as link_target allows."""
    if attribute == "href":
        return link_target(value)
    return value


def markdown_text(text: str) -> str:
    """Markdown as plain text for the text part: links as "words (url)", wrapped lines."""
    html = str(render_markdown(text))
    html = _LINK.sub(lambda m: m.group(1) if m.group(2) == m.group(1) else _link_text(m), html)
    html = _BLOCK_END.sub("\n\n", html)
    html = re.sub(r"<li>", "- ", html)
    html = re.sub(r"<br\s*/?>", "\n", html)
    plain = html_lib.unescape(nh3.clean(html, tags=set()))
    return wrap_text(plain)


def _link_text(match: re.Match[str]) -> str:
    """A link's words followed by its URL."""
    return f"{match.group(2)} ({match.group(1)})"


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap prose paragraph by paragraph, never breaking a word or a URL."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    wrapped = [
        "\n".join(
            textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
            for line in paragraph.splitlines()
            if line.strip()
        )
        for paragraph in paragraphs
    ]
    return "\n\n".join(p for p in wrapped if p)


def _tidy_text(text: str) -> str:
    """Strip trailing spaces and runs of blank lines that templates leave behind."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def short_lines(html: str, limit: int = MAX_BODY_LINE) -> str:
    """Break HTML lines longer than ``limit`` at whitespace outside tags (where it is inert)."""
    out: list[str] = []
    for line in html.split("\n"):
        while len(line) > limit:
            cut = _html_break(line, limit)
            if cut is None:
                break
            out.append(line[:cut])
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


def _html_break(line: str, limit: int) -> int | None:
    """The last space before ``limit`` that lies in text (not in a tag), else the first one."""
    best: int | None = None
    in_tag = False
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif in_tag:
            if char in "\"'":
                quote = char
            elif char == ">":
                in_tag = False
        elif char == "<":
            in_tag = True
        elif char == " ":
            if index > limit and best is not None:
                return best
            best = index
    return best


def html_part(template: str, **context: Any) -> str:
    """Render an HTML template, inline its CSS, keep lines short."""
    return short_lines(_INLINER.inline(render_template(template, **context)))


def text_part(template: str, **context: Any) -> str:
    """Render a text template and tidy it."""
    return _tidy_text(render_template(template, **context))
