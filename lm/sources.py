"""English text for LM training, read into raw (not yet normalised) sentences with where it came from and its licence.

Two kinds: named texts that Debian packages install (`SOURCES`: fortunes, a Bible, a dictionary), and a folder
of text files with a `SOURCES.tsv` beside them (`read_text_folder`, e.g. `../shared/lmtext`): Project Gutenberg
books under `gutenberg/`, one sentence a line under `tatoeba/`, running prose anywhere else.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lm.corpus import raw_sentences, read_text
from lm.gutenberg import book_text

SWORD_WEB_DIR = Path("/usr/share/sword/modules/texts/ztext/engWEB2015eb")
TEXT_FOLDER = Path(__file__).resolve().parent.parent.parent / "shared" / "lmtext"  # ../shared/lmtext beside the repo
SOURCES_TABLE = "SOURCES.tsv"
BOOK_FOLDERS, SENTENCE_LINE_FOLDERS = {"gutenberg"}, {"tatoeba"}
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


@dataclass(frozen=True)
class TextFile:
    """One file of a text folder and its row of SOURCES.tsv: path, repository, commit, licence, word count."""

    path: Path
    name: str  # as SOURCES.tsv writes it, relative to the folder: "gutenberg/1342_Pride-and-Prejudice.txt"
    repository: str
    commit: str
    licence: str
    words: int

    @property
    def group(self) -> str:
        """The sub-folder, which says how the file is read and which held-out set its sentences feed."""
        return self.name.split("/")[0] if "/" in self.name else "text"

    @property
    def description(self) -> str:
        return f"{self.name}: {self.repository} at {self.commit[:12]}; licence: {self.licence}"

    def sentences(self) -> list[str]:
        """Raw sentences: a Gutenberg book's prose, a sentence-a-line file's lines, or running prose split."""
        text = read_text(self.path)
        if self.group in SENTENCE_LINE_FOLDERS:
            return [line.strip() for line in text.splitlines() if line.strip()]
        return list(raw_sentences(book_text(text) if self.group in BOOK_FOLDERS else text))


def read_text_folder(folder: Path = TEXT_FOLDER) -> list[TextFile]:
    """The files of a text folder as SOURCES.tsv lists them; every .txt file must be listed, so none trains unlicensed."""
    table = folder / SOURCES_TABLE
    if not table.is_file():
        raise FileNotFoundError(f"{table} not found: a text folder lists its files (path, repository, commit, licence, words) in {SOURCES_TABLE}")
    files = []
    for line_number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5 or not fields[4].strip().isdigit():
            raise ValueError(f"{table}:{line_number}: expected 5 tab-separated fields (path, repository, commit, licence, words)")
        name, repository, commit, licence, words = (field.strip() for field in fields)
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: listed in {SOURCES_TABLE} but not found")
        files.append(TextFile(folder / name, name, repository, commit, licence, int(words)))
    listed = {file.name for file in files}
    unlisted = sorted(name for name in (path.relative_to(folder).as_posix() for path in folder.rglob("*.txt")) if name not in listed)
    if unlisted:
        raise ValueError(f"{folder / unlisted[0]}: not listed in {table}, so its licence is unknown")
    return files
