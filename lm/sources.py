"""English text that Debian packages install, read into raw sentences for LM training.

Each named source is a function returning raw (not yet normalised) sentences, with the
package that provides it and that text's licence, so a build can record where its words came from.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lm.corpus import raw_sentences

SWORD_WEB_DIR = Path("/usr/share/sword/modules/texts/ztext/engWEB2015eb")
DEVIL_DICT = Path("/usr/share/dictd/devil.dict.dz")

_FOOTNOTE_OR_HEADING = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.DOTALL)
_WORD_TAG = re.compile(r"</?w\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    licence: str
    sentences: Callable[[], list[str]]

    @property
    def description(self) -> str:
        """How a build's metadata names this source: package and licence."""
        return f"{self.name}: Debian package {self.package}; licence: {self.licence}"


def fortunes_train() -> list[str]:
    """The train split of the fortune sentences: the same text the synthetic corpus speaks, minus held-out sentences."""
    from asr.data.sentences import sentences_by_split

    return sentences_by_split()["train"]


def sword_ztext_blocks(module_dir: Path) -> list[str]:
    """Decompressed blocks of a SWORD zText module (Old then New Testament): OSIS markup."""
    blocks = []
    for testament in ("ot", "nt"):
        index, data = (module_dir / f"{testament}.bzs").read_bytes(), (module_dir / f"{testament}.bzz").read_bytes()
        for entry in range(0, len(index), 12):
            offset, size, _ = struct.unpack_from("<III", index, entry)
            blocks.append(zlib.decompress(data[offset : offset + size]).decode("utf-8"))
    return blocks


def osis_to_text(markup: str) -> str:
    """Running text of OSIS markup: footnotes and headings dropped, word tags removed, other tags as spaces."""
    return _TAG.sub(" ", _WORD_TAG.sub("", _FOOTNOTE_OR_HEADING.sub(" ", markup)))


def world_english_bible(module_dir: Path = SWORD_WEB_DIR) -> list[str]:
    """Sentences of the World English Bible from Debian's sword-text-web package."""
    if not (module_dir / "ot.bzz").is_file():
        raise FileNotFoundError(f"{module_dir} not found: install Debian's 'sword-text-web' package (apt-get install sword-text-web)")
    return [sentence for block in sword_ztext_blocks(module_dir) for sentence in raw_sentences(osis_to_text(block))]


def devils_dictionary(path: Path = DEVIL_DICT) -> list[str]:
    """Sentences of Ambrose Bierce's The Devil's Dictionary from Debian's dict-devil package (dictzip is gzip)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install Debian's 'dict-devil' package (apt-get install dict-devil)")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as text:
        return list(raw_sentences(text.read()))


SOURCES = {
    source.name: source
    for source in (
        Source("fortunes", "fortunes", "BSD-3-Clause (fortune-mod and its data files, per the Debian copyright file); the cookies quote many authors", fortunes_train),
        Source("web-bible", "sword-text-web", "World English Bible: public domain", world_english_bible),
        Source("devils-dictionary", "dict-devil", "The Devil's Dictionary (Bierce, 1911): public domain", devils_dictionary),
    )
}
