"""Writing one bench's section of bench/RESULTS.md, leaving the other benches' sections as they are."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, report: str, results: Path = RESULTS) -> None:
    """Replace the section under `heading` (e.g. '## Decoding'), or append it if it is not there yet."""
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    section = f"{heading}\n\n{report}\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text, count=1) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    results.write_text(text.rstrip("\n") + "\n")
