"""The shipped defaults (model and LM) and the one function that turns settings into a Recognizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr.checkpoint import load_checkpoint
from asr.device import resolve_device
from asr.streaming import EndpointConfig, Recognizer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "asr" / "pretrained" / "ds2_small.pt"
DEFAULT_LM = REPO_ROOT / "lm" / "default" / "lm.binary"


@dataclass(frozen=True)
class BeamSettings:
    """What a user may change about the beam search: the CLI flags and the demo's controls."""

    use_lm: bool = True
    lm_path: str | None = None  # None: the shipped default LM
    beam_width: int = 32
    alpha: float = 0.5
    beta: float = 1.0
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = 10.0


@dataclass
class LoadedRecognizer:
    recognizer: Recognizer
    warnings: list[str] = field(default_factory=list)


def build_beam_decoder(settings: BeamSettings):
    """A beam decoder for the settings; a missing or broken LM falls back to no LM with a warning."""
    from asr.decoding import BeamSearchOptions, build_beam_decoder_with_fallback

    options = BeamSearchOptions(beam_width=settings.beam_width, alpha=settings.alpha, beta=settings.beta,
                                hotwords=tuple(settings.hotwords), hotword_weight=settings.hotword_weight)
    lm_path = (settings.lm_path or str(DEFAULT_LM)) if settings.use_lm else None
    return build_beam_decoder_with_fallback(options, lm_path)


def load_recognizer(model: str | None = None, beam: BeamSettings | None = BeamSettings(), device: str = "auto",
                    endpoint: EndpointConfig = EndpointConfig()) -> LoadedRecognizer:
    """Model from a path or hf:// reference (default: the shipped one); beam=None for greedy only."""
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(model or DEFAULT_MODEL, device=torch_device)
    warnings: list[str] = []
    beam_decoder = None
    if beam is not None:
        beam_decoder, warning = build_beam_decoder(beam)
        if warning:
            warnings.append(warning)
    recognizer = Recognizer(checkpoint.model, checkpoint.feature_config, beam_decoder, endpoint=endpoint, device=torch_device)
    return LoadedRecognizer(recognizer, warnings)
