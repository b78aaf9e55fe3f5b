"""The shipped defaults (model and LM) and the one function that turns settings into a Recognizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr.checkpoint import load_checkpoint
from asr.device import resolve_device
from asr.dispatch import BatchDispatcher
from asr.model import fold_batchnorms
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
    # Tuned with `python -m asr tune-lm data/real/dev.jsonl` on the shipped model (stage 37) and the general-English
    # LM (2026-12-07): real dev WER 72.80 %; the fortunes LM's own best was alpha 0.5, beta 1 (73.05 %, lm/README.md).
    alpha: float = 0.75
    beta: float = 3.0
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = 10.0


@dataclass
class LoadedRecognizer:
    recognizer: Recognizer
    warnings: list[str] = field(default_factory=list)
    dispatcher: BatchDispatcher | None = None  # set with batch_dispatch=True; close() it when the app stops


def build_beam_decoder(settings: BeamSettings):
    """A beam decoder for the settings; a missing or broken LM falls back to no LM with a warning."""
    from asr.decoding import BeamSearchOptions, build_beam_decoder_with_fallback

    options = BeamSearchOptions(beam_width=settings.beam_width, alpha=settings.alpha, beta=settings.beta,
                                hotwords=tuple(settings.hotwords), hotword_weight=settings.hotword_weight)
    lm_path = (settings.lm_path or str(DEFAULT_LM)) if settings.use_lm else None
    return build_beam_decoder_with_fallback(options, lm_path)


def load_recognizer(model: str | None = None, beam: BeamSettings | None = BeamSettings(), device: str = "auto",
                    endpoint: EndpointConfig = EndpointConfig(), batch_dispatch: bool = False,
                    max_batch_size: int = 64, max_wait_ms: float = 5.0) -> LoadedRecognizer:
    """Model from a path or hf:// reference (default: the shipped one); beam=None for greedy only.

    batch_dispatch=True runs every stream's model step through one BatchDispatcher (DS2's Batch
    Dispatch), so concurrent streams share batched steps on the device.
    """
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(model or DEFAULT_MODEL, device=torch_device)
    warnings: list[str] = []
    beam_decoder = None
    if beam is not None:
        beam_decoder, warning = build_beam_decoder(beam)
        if warning:
            warnings.append(warning)
    model = fold_batchnorms(checkpoint.model)  # one inference copy, shared by the dispatcher and every stream
    dispatcher = BatchDispatcher(model, torch_device, max_batch_size, max_wait_ms) if batch_dispatch else None
    recognizer = Recognizer(model, checkpoint.feature_config, beam_decoder, endpoint=endpoint, device=torch_device,
                            step_function=dispatcher.step if dispatcher else None)
    return LoadedRecognizer(recognizer, warnings, dispatcher)
