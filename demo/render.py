"""What the demo shows, as plain values: transcript HTML, live figures, and the utterance picture.

No Gradio and no model here: the handlers hand over texts, numbers and arrays, and get back
HTML strings and an RGB image.
"""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass

import numpy as np

from asr.text import BLANK_INDEX, LABELS

# Words where the two decoders disagree are marked in both columns.
CSS = """
#transcripts .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
#transcripts .column { border: 1px solid var(--border-color-primary, #ddd); border-radius: 8px; padding: 8px 10px; }
#transcripts h3 { margin: 0 0 6px 0; font-size: 1rem; }
#transcripts .scroll { max-height: 320px; overflow-y: auto; display: flex; flex-direction: column-reverse; }
#transcripts .utterance { margin: 0 0 6px 0; line-height: 1.5; }
#transcripts .utterance.partial { opacity: 0.75; font-style: italic; }
#transcripts .when { display: block; color: var(--body-text-color-subdued, #888); font-size: 0.75em; }
#transcripts mark.differs { background: #ffe08a; color: inherit; border-radius: 3px; padding: 0 2px; }
#transcripts .empty { color: var(--body-text-color-subdued, #888); }
#figures table { border-collapse: collapse; }
#figures td { padding: 2px 12px 2px 0; }
#notice .warning { background: #fff4ce; color: #5c4400; border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
#notice .error { background: #fde2e1; color: #7a1010; border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
#notice .info { color: var(--body-text-color-subdued, #666); margin: 4px 0; }
"""


@dataclass(frozen=True)
class TranscriptLine:
    """One utterance as both decoders heard it; `final` is False for the one still growing."""

    greedy: str
    beam: str | None
    label: str  # when it was said, e.g. "0:03.2-0:05.9"
    final: bool = True
    beam_note: str = ""  # the beam settings it was decoded with


@dataclass(frozen=True)
class LiveFigures:
    device: str
    audio_seconds: float = 0.0
    real_time_factor: float | None = None
    last_chunk_ms: float | None = None
    last_chunk_audio_ms: float | None = None
    mean_chunk_ms: float | None = None
    chunks: int = 0
    queued_seconds: float = 0.0  # audio received but not yet decoded
    utterances: int = 0
    source: str = "idle"
    state: str = "idle"  # "live" while audio is coming in, "finished" once the stream has ended
    decoder: str = ""


def differing_words(greedy_words: list[str], beam_words: list[str]) -> tuple[list[bool], list[bool]]:
    """For each word of each transcript: True where it is not part of the words both share in order."""
    greedy_flags, beam_flags = [True] * len(greedy_words), [True] * len(beam_words)
    matcher = difflib.SequenceMatcher(a=greedy_words, b=beam_words, autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            greedy_flags[block.a + offset] = False
            beam_flags[block.b + offset] = False
    return greedy_flags, beam_flags


def _marked(words: list[str], flags: list[bool]) -> str:
    return " ".join(f'<mark class="differs">{html.escape(w)}</mark>' if differs else html.escape(w)
                    for w, differs in zip(words, flags))


def transcripts_html(lines: list[TranscriptLine], beam_title: str = "Beam search") -> str:
    """Two columns, greedy and beam, one paragraph per utterance, newest at the bottom."""
    columns = {"greedy": [], "beam": []}
    for line in lines:
        greedy_words, beam_words = line.greedy.split(), (line.beam or "").split()
        greedy_flags, beam_flags = differing_words(greedy_words, beam_words) if line.beam is not None else ([False] * len(greedy_words), [])
        css = "utterance" + ("" if line.final else " partial")
        when = f'<span class="when">{html.escape(line.label)}</span>'
        beam_when = f'<span class="when">{html.escape(" · ".join(filter(None, (line.label, line.beam_note))))}</span>'
        columns["greedy"].append(f'<p class="{css}">{when}<span class="words">{_marked(greedy_words, greedy_flags)}</span></p>')
        columns["beam"].append(f'<p class="{css}">{beam_when}<span class="words">{_marked(beam_words, beam_flags)}</span></p>')
    empty = '<p class="empty">Nothing yet: press Record and speak, or pick a file.</p>'
    parts = []
    for key, title in (("greedy", "Greedy CTC"), ("beam", beam_title)):
        body = "".join(columns[key]) or empty
        # column-reverse keeps the view scrolled to the newest line; the inner div keeps reading order.
        parts.append(f'<div class="column {key}"><h3>{html.escape(title)}</h3>'
                     f'<div class="scroll"><div>{body}</div></div></div>')
    return f'<div class="columns">{"".join(parts)}</div>'


def clock(seconds: float) -> str:
    """m:ss.s, the way the history labels utterances."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def figures_html(figures: LiveFigures) -> str:
    """The live numbers of the current stream as a small table."""
    def number(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    rtf = figures.real_time_factor
    speed = "–" if not rtf else f"{rtf:.3f} ({1 / rtf:.1f}× faster than real time)" if rtf < 1 else f"{rtf:.3f} (slower than real time)"
    chunk = "–" if figures.last_chunk_ms is None else (
        f"{figures.last_chunk_ms:.0f} ms for {number(figures.last_chunk_audio_ms, '.0f')} ms of audio"
        f" (mean {number(figures.mean_chunk_ms, '.0f')} ms over {figures.chunks} chunks)")
    rows = [
        ("Device", figures.device),
        ("Input", figures.source),
        ("State", figures.state),
        ("Real-time factor", speed),
        ("Time per chunk", chunk),
        ("Audio processed", f"{figures.audio_seconds:.1f} s"),
        ("Waiting to be decoded", f"{figures.queued_seconds:.1f} s"),
        ("Utterances", str(figures.utterances)),
        ("Beam decoder", figures.decoder or "–"),
    ]
    cells = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td class=\"figure\" data-name=\"{html.escape(k)}\">{html.escape(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def notice_html(errors: list[str], warnings: list[str], info: str = "") -> str:
    parts = [f'<div class="error">{html.escape(e)}</div>' for e in errors]
    parts += [f'<div class="warning">⚠ {html.escape(w)}</div>' for w in warnings]
    if info:
        parts.append(f'<div class="info">{html.escape(info)}</div>')
    return "".join(parts)


def _label_name(label: str) -> str:
    return {"_": "∅", " ": "␣"}.get(label, label)


def utterance_picture(features: np.ndarray, log_probs: np.ndarray, frame_seconds: float, output_frame_seconds: float,
                      title: str = "", labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Log-mel spectrogram above the CTC posteriorgram on one time axis; returns an RGB uint8 image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: figures stay local to the call, safe across threads

    figure = Figure(figsize=(11, 6.5), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    spectrum_axes, posterior_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.7))
    duration = max(len(features) * frame_seconds, len(log_probs) * output_frame_seconds, 1e-3)
    if len(features):
        spectrum_axes.imshow(features.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                             extent=(0, len(features) * frame_seconds, 0, features.shape[1]))
    spectrum_axes.set_ylabel("mel bin")
    spectrum_axes.set_title(title or "log-mel spectrogram and CTC posteriorgram", fontsize=10, pad=4)

    probabilities = np.exp(log_probs.T) if len(log_probs) else np.zeros((len(labels), 1))
    posterior_axes.imshow(probabilities, origin="lower", aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0,
                          interpolation="nearest", extent=(0, max(len(log_probs), 1) * output_frame_seconds, -0.5, len(labels) - 0.5))
    posterior_axes.set_yticks(range(len(labels)), [_label_name(label) for label in labels], fontsize=6.5)
    posterior_axes.set_ylabel("character")
    posterior_axes.set_xlabel("time (s)")
    posterior_axes.set_xlim(0, duration)
    if len(log_probs):
        best = log_probs.argmax(axis=1)
        times = (np.arange(len(best)) + 0.5) * output_frame_seconds
        speech = best != BLANK_INDEX
        posterior_axes.scatter(times[speech], best[speech], s=6, c="crimson", marker="s", linewidths=0)
        # The character each run of frames emits, written where the run starts (CTC collapse).
        starts = np.flatnonzero(speech & np.concatenate([[True], best[1:] != best[:-1]]))
        for index in starts:
            posterior_axes.annotate(_label_name(labels[best[index]]), (times[index], len(labels) - 0.5),
                                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                                    fontsize=8, annotation_clip=False, color="crimson")
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
