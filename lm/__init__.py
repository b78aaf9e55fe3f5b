"""KenLM language models for the beam-search decoder: tools, corpus preparation, building, perplexity."""

from pathlib import Path

DEFAULT_LM_DIR = Path(__file__).resolve().parent / "default"
