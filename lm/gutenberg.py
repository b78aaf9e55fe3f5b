"""The prose of a Project Gutenberg book: licence header and footer, title pages, contents, headings and notes removed.

What is left is paragraphs of the author's running text, for `lm.corpus.raw_sentences`. The rules work on
paragraphs (blocks between blank lines) and are deliberately blunt: a paragraph that is not clearly prose is
dropped, since a book has far more prose than an LM needs and a heading or a table of contents teaches it word
sequences nobody says ("chapter twelve the storm chapter thirteen").
"""

from __future__ import annotations

import re

# The licence header ends, and the footer starts, at these lines (new and old Project Gutenberg formats).
_HEADER_END = re.compile(r"^\*{3} ?START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$", re.MULTILINE | re.IGNORECASE)
_FOOTER_START = re.compile(r"^\*{3} ?END OF (THE|THIS) PROJECT GUTENBERG|^\s*End of (the )?Project Gutenberg", re.MULTILINE | re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Editorial insertions: footnotes, illustrations, page references, "[Transcriber's Note: ...]".
_BRACKETED = re.compile(r"\[[^\[\]]{0,5000}\]|\{[^{}]{0,500}\}")
_LOWERCASE = re.compile(r"[a-z]")
_ROMAN_OR_NUMBER = r"(?:[IVXLC]+|\d+|[A-Z][a-z]+(?:[- ][A-Z]?[a-z]+)?)"  # XII, 12, Twelve, Twenty-One
_HEADING = re.compile(rf"^(?:CHAPTER|Chapter|BOOK|Book|PART|Part|VOLUME|Volume|STAVE|Stave|LETTER|Letter|ACT|SCENE)\s+{_ROMAN_OR_NUMBER}\b|^[IVXLC]+\.?$")
# Paragraphs about the edition rather than of the book: notes, credits, links.
_EDITORIAL = re.compile(r"transcriber|^produced by\b|gutenberg|\be-?texts?\b|\be-?books?\b|https?:|www\.", re.IGNORECASE)
_NOTE_HEADING = re.compile(r"^(?:[\w'\u2019]+\s){0,3}notes?\W*$", re.IGNORECASE)
_CONTENTS_HEADING = re.compile(r"^(?:table of )?contents\W*$|^list of illustrations\W*$", re.IGNORECASE)
# Where the book ends: what follows (advertisements, errata, an index) is not the author's prose.
_THE_END = re.compile(r"^(?:THE END|The End|FINIS|Finis|INDEX|Index)\W*$")
_CLOSING = "\"')]_*\u201d\u2019"
_FOOTNOTE_MARK = re.compile(r"(?:\(\d+\)|\*+[a-z]?)$")  # "...the body.(322)", "...purchase. *h"
# A short note heading ending in ':' ("Editorial note:", "Typographical errors corrected by the transcriber:") owns
# the paragraphs after it up to the next heading, and a contents heading the entries after it; at most this many
# paragraphs, so a stray colon cannot swallow a book.
_BLOCK_LIMIT = 400


def licensed_text(text: str) -> str:
    """The text between the Project Gutenberg licence header and footer (all of it when neither is there)."""
    header = _HEADER_END.search(text)
    if header:
        text = text[header.end() :]
    footer = _FOOTER_START.search(text)
    return text[: footer.start()] if footer else text


def is_heading(paragraph: str) -> bool:
    """A title, heading or contents line: no lower-case letter at all, or 'CHAPTER XII' / 'Book Two' / a lone numeral."""
    return not _LOWERCASE.search(paragraph) or bool(_HEADING.match(paragraph))


def is_prose(paragraph: str) -> bool:
    """Running text ends like a sentence; headings, contents entries, title pages and unpunctuated verse do not."""
    end = _FOOTNOTE_MARK.sub("", paragraph.rstrip()).rstrip().rstrip(_CLOSING)
    return bool(end) and not end[-1].isalnum() and not is_heading(paragraph)


def prose_paragraphs(text: str) -> list[str]:
    """The book's prose paragraphs, each on one line, in order; everything after a closing 'THE END' or 'INDEX' dropped."""
    paragraphs = [" ".join(block.split()) for block in _PARAGRAPH_BREAK.split(_BRACKETED.sub(" ", licensed_text(text)))]
    paragraphs = [paragraph for paragraph in paragraphs if paragraph]
    ends = [index for index, paragraph in enumerate(paragraphs) if _THE_END.match(paragraph)]
    if ends and ends[-1] >= 0.8 * len(paragraphs):
        paragraphs = paragraphs[: ends[-1]]
    kept, block, block_left = [], None, 0
    for paragraph in paragraphs:
        if block_left and not _ends_block(paragraph, block):
            block_left -= 1
            continue
        block_left = 0
        if _CONTENTS_HEADING.match(paragraph):
            block, block_left = "contents", _BLOCK_LIMIT
        elif _EDITORIAL.search(paragraph) or _NOTE_HEADING.match(paragraph):
            if paragraph.endswith(":") and len(paragraph.split()) <= 12:
                block, block_left = "note", _BLOCK_LIMIT
        elif is_prose(paragraph):
            kept.append(paragraph)
    return kept


def _ends_block(paragraph: str, block: str | None) -> bool:
    """A note runs to the next heading; a table of contents to the first real paragraph of prose."""
    if block == "note":
        return is_heading(paragraph)
    return is_prose(paragraph) and len(paragraph.split()) >= 15


def book_text(text: str) -> str:
    """The prose of a Project Gutenberg book as paragraphs separated by blank lines (what raw_sentences reads)."""
    return "\n\n".join(prose_paragraphs(text))
