"""What the demo shows, as plain values: transcript HTML, live figures, and the utterance picture.

No Gradio and no model here: the handlers hand over texts, numbers and arrays, and get back
HTML strings and an RGB image.
"""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from asr.decoding import ScoredHypothesis
from asr.text import BLANK_INDEX, LABELS
from asr.transcript import LOW_CONFIDENCE, TimedWord

RICH_LINES = 20  # the newest finished lines carry word timings and confidences; older ones are plain text (smaller page)

# Words where the two decoders disagree are marked in both columns.
CSS = """
#transcripts .columns { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
#transcripts .columns.three { grid-template-columns: 1fr 1fr 1fr; }
@media (max-width: 800px) { #transcripts .columns, #transcripts .columns.three { grid-template-columns: 1fr; } }
#transcripts .column { border: 1px solid var(--border-color-primary, #ddd); border-radius: 8px; padding: 8px 10px; }
#transcripts h3 { margin: 0 0 6px 0; font-size: 1rem; }
#transcripts .scroll { max-height: 320px; overflow-y: auto; display: flex; flex-direction: column-reverse; }
#transcripts .utterance { margin: 0 0 6px 0; line-height: 1.5; }
#transcripts .utterance.partial { opacity: 0.75; font-style: italic; }
#transcripts .when { display: block; color: var(--body-text-color-subdued, #888); font-size: 0.75em; }
#transcripts mark.differs { background: #ffe08a; color: inherit; border-radius: 3px; padding: 0 2px; }
#transcripts mark.differs-lm { background: #c9e4ff; color: inherit; border-radius: 3px; padding: 0 2px; }
#transcripts mark.differs.differs-lm { background: linear-gradient(#ffe08a 50%, #c9e4ff 50%); }
#transcripts .w.low { color: #9a6a00; text-decoration: underline dotted #c98a00; }
#transcripts .w.very-low { color: #b03030; text-decoration: underline dotted #b03030; }
#transcripts .utterance[data-utterance] { cursor: pointer; border-radius: 4px; }
#transcripts .utterance[data-utterance]:hover { background: var(--background-fill-secondary, #f3f3f3); }
#transcripts .utterance.selected { outline: 2px solid #7aa7e0; }
#transcripts .play { color: var(--body-text-color-subdued, #888); font-size: 0.8em; margin-right: 4px; }
#nbest table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
#nbest th, #nbest td { padding: 2px 8px; text-align: right; border-bottom: 1px solid var(--border-color-primary, #eee); }
#nbest td.text, #nbest th.text { text-align: left; }
#nbest h4 { margin: 6px 0 2px 0; font-size: 0.95rem; }
#nbest .empty, #nbest .note { color: var(--body-text-color-subdued, #888); font-size: 0.85em; }
#transcripts .empty { color: var(--body-text-color-subdued, #888); }
#figures table { border-collapse: collapse; }
#figures td { padding: 2px 12px 2px 0; }
#notice .warning { background: #fff4ce; color: #5c4400; border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
#notice .error { background: #fde2e1; color: #7a1010; border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
.hidden-token { display: none !important; }
#capacity .busy { background: #fff4ce; color: #5c4400; border-radius: 6px; padding: 6px 10px; margin: 4px 0; }
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
    plain: str | None = None  # beam search without the LM (the third column), where it ran
    words: tuple[TimedWord, ...] = ()  # the beam transcript's words with times and confidences (finished lines)
    number: int | None = None  # a finished line's number: the page sends it back when the line is clicked
    selected: bool = False


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


def _marked(words: list[str], flags: list[bool], lm_flags: list[bool] | None = None,
            timings: tuple[TimedWord, ...] = ()) -> str:
    """Words with their differences marked: `differs` against the column to the left (greedy vs beam), `differs-lm`
    between beam and beam + LM; with timings, each word says its time and confidence on hover."""
    lm_flags = lm_flags or [False] * len(words)
    timed = len(timings) == len(words) and all(t.word == w for t, w in zip(timings, words))
    pieces = []
    for index, word in enumerate(words):
        text = html.escape(word)
        if timed:
            timing = timings[index]
            shade = " very-low" if timing.confidence < LOW_CONFIDENCE / 2 else " low" if timing.confidence < LOW_CONFIDENCE else ""
            text = (f'<span class="w{shade}" data-start="{timing.start:.2f}" data-end="{timing.end:.2f}" '
                    f'data-confidence="{timing.confidence:.3f}" title="{clock(timing.start)}–{clock(timing.end)} · '
                    f'confidence {timing.confidence:.2f}">{text}</span>')
        classes = " ".join(name for name, on in (("differs", flags[index]), ("differs-lm", lm_flags[index])) if on)
        pieces.append(f'<mark class="{classes}">{text}</mark>' if classes else text)
    return " ".join(pieces)


def transcripts_html(lines: list[TranscriptLine], beam_title: str = "Beam search", show_plain: bool = False) -> str:
    """Greedy and beam columns (and beam without the LM between them when `show_plain`), one paragraph per
    utterance, newest at the bottom; differences marked pairwise (greedy vs beam, beam vs beam + LM)."""
    columns = {"greedy": [], "plain": [], "beam": []}
    rich_from = max(0, sum(1 for line in lines if line.final) - RICH_LINES)
    finished = 0
    for line in lines:
        greedy_words, beam_words = line.greedy.split(), (line.beam or "").split()
        plain_words = (line.plain or "").split()
        no_flags = lambda words: [False] * len(words)  # noqa: E731
        if show_plain and line.plain is not None:
            greedy_flags, plain_flags = differing_words(greedy_words, plain_words)
            plain_lm_flags, beam_lm_flags = differing_words(plain_words, beam_words) if line.beam is not None else (no_flags(plain_words), [])
            beam_flags = no_flags(beam_words)
        else:
            greedy_flags, beam_flags = differing_words(greedy_words, beam_words) if line.beam is not None else (no_flags(greedy_words), [])
            plain_flags, plain_lm_flags, beam_lm_flags = [], [], None
        rich = line.final and finished >= rich_from
        finished += line.final
        css = "utterance" + ("" if line.final else " partial") + (" selected" if line.selected else "")
        number = f' data-utterance="{line.number}"' if line.final and line.number is not None else ""
        play = '<span class="play" title="play this utterance">▶</span>' if number else ""
        when = f'<span class="when">{play}{html.escape(line.label)}</span>'
        beam_when = f'<span class="when">{play}{html.escape(" · ".join(filter(None, (line.label, line.beam_note))))}</span>'
        columns["greedy"].append(f'<p class="{css}"{number}>{when}<span class="words">{_marked(greedy_words, greedy_flags)}</span></p>')
        if show_plain:
            body = _marked(plain_words, plain_flags, plain_lm_flags) if line.plain is not None else '<span class="empty">(not decoded: switched on later)</span>'
            columns["plain"].append(f'<p class="{css}"{number}>{when}<span class="words">{body}</span></p>')
        beam_html = _marked(beam_words, beam_flags, beam_lm_flags, line.words if rich else ())
        columns["beam"].append(f'<p class="{css}"{number}>{beam_when}<span class="words">{beam_html}</span></p>')
    empty = '<p class="empty">Nothing yet: press Record and speak, or pick a file.</p>'
    parts = []
    shown = [("greedy", "Greedy CTC")] + ([("plain", "Beam search, no LM")] if show_plain else []) + [("beam", beam_title)]
    for key, title in shown:
        body = "".join(columns[key]) or empty
        # column-reverse keeps the view scrolled to the newest line; the inner div keeps reading order.
        parts.append(f'<div class="column {key}"><h3>{html.escape(title)}</h3>'
                     f'<div class="scroll"><div>{body}</div></div></div>')
    return f'<div class="columns{" three" if show_plain else ""}">{"".join(parts)}</div>'


def n_best_html(live: list[ScoredHypothesis], live_title: str, finished: tuple[ScoredHypothesis, ...], finished_title: str) -> str:
    """The beam search's best hypotheses with their scores split: the utterance under way, and a finished one."""
    def table(hypotheses, title: str, css: str) -> str:
        if not hypotheses:
            return ""
        hotwords = any(h.hotwords for h in hypotheses)
        head = ('<tr><th>#</th><th class="text">hypothesis</th><th title="the score the beam is ranked by">total</th>'
                '<th title="CTC log-probability of the transcript">acoustic</th><th title="alpha × LM log-probability '
                '(with its out-of-vocabulary penalties)">LM</th><th title="beta for each word">word bonus</th>'
                + ("<th>hotwords</th>" if hotwords else "") + "</tr>")
        rows = []
        for rank, h in enumerate(hypotheses, start=1):
            cells = [f"{h.total:.2f}", f"{h.acoustic:.2f}", f"{h.language_model:.2f}", f"{h.word_bonus:.2f}"] + ([f"{h.hotwords:.2f}"] if hotwords else [])
            data = (f'data-total="{h.total!r}" data-acoustic="{h.acoustic!r}" data-lm="{h.language_model!r}" '
                    f'data-bonus="{h.word_bonus!r}" data-hotwords="{h.hotwords!r}"')
            rows.append(f'<tr class="hypothesis" {data}><td>{rank}</td><td class="text">{html.escape(h.text) or "∅"}</td>'
                        + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        return f'<div class="{css}"><h4>{html.escape(title)}</h4><table>{head}{"".join(rows)}</table></div>'

    body = table(live, live_title, "live") + table(finished, finished_title, "finished")
    if not body:
        return '<p class="empty">The beam search\'s best hypotheses, with their scores split, appear here as you speak.</p>'
    return body + ('<p class="note">total = acoustic + LM + word bonus (log scale; higher is better). Click a finished '
                   "utterance to see its list and hear it.</p>")


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


def capacity_html(text: str) -> str:
    """The busy notice under the Record button (empty when a slot is free)."""
    return f'<div class="busy">{html.escape(text)}</div>' if text else ""


def notice_html(errors: list[str], warnings: list[str], info: str = "") -> str:
    parts = [f'<div class="error">{html.escape(e)}</div>' for e in errors]
    parts += [f'<div class="warning">⚠ {html.escape(w)}</div>' for w in warnings]
    if info:
        parts.append(f'<div class="info">{html.escape(info)}</div>')
    return "".join(parts)


def _label_name(label: str) -> str:
    return {"_": "∅", " ": "␣"}.get(label, label)


PICTURE_WIDTH = 990
_MARGIN_LEFT, _MARGIN_RIGHT, _TITLE_HEIGHT = 62, 12, 24
_SPECTRUM_HEIGHT, _LETTER_BAND, _ROW_HEIGHT, _AXIS_HEIGHT = 170, 18, 9, 40


@lru_cache(maxsize=None)
def _palette(name: str) -> np.ndarray:
    """A matplotlib colormap as a 256-entry uint8 RGB table (no figure: a lookup per pixel)."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


@lru_cache(maxsize=None)
def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


@lru_cache(maxsize=1024)
def _stamp(text: str, size: int, colour: str, anchor: str):
    """`text` rendered once as an RGBA image, with the offset of its corner from the anchor point: the labels repeat
    from picture to picture, and pasting a rendered one costs a fraction of rendering it again."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font(size).getbbox(text, anchor=anchor)
    stamp = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(stamp).text((-left, -top), text, fill=colour, font=_font(size), anchor=anchor)
    return stamp, left, top


def _put(image, position: tuple[float, float], text: str, size: int, colour: str = "black", anchor: str = "la") -> None:
    stamp, left, top = _stamp(text, size, colour, anchor)
    image.paste(stamp, (int(round(position[0])) + left, int(round(position[1])) + top), stamp)


def _colour(values: np.ndarray, palette: str, low: float, high: float) -> np.ndarray:
    scaled = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0)
    return _palette(palette)[(scaled * 255).round().astype(np.int64)]


def _columns(count: int, seconds_each: float, duration: float, width: int) -> np.ndarray:
    """For each pixel column of a panel `width` wide spanning `duration`, the data column it shows (-1: none)."""
    times = (np.arange(width) + 0.5) * duration / width
    index = np.floor(times / seconds_each).astype(np.int64)
    return np.where(index < count, index, -1)


def utterance_picture(features: np.ndarray, log_probs: np.ndarray, frame_seconds: float, output_frame_seconds: float,
                      title: str = "", labels: tuple[str, ...] = LABELS) -> np.ndarray:
    """Log-mel spectrogram above the CTC posteriorgram on one time axis; returns an RGB uint8 image.

    Drawn with numpy and PIL rather than a matplotlib figure: a picture is made per utterance on the cores that serve
    every stream, and a figure's layout and text cost about 0.4 s where this costs a few milliseconds.
    """
    from PIL import Image, ImageDraw

    rows = len(labels)
    panel_width = PICTURE_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    spectrum_top = _TITLE_HEIGHT
    posterior_top = spectrum_top + _SPECTRUM_HEIGHT + _LETTER_BAND
    height = posterior_top + rows * _ROW_HEIGHT + _AXIS_HEIGHT
    canvas = np.full((height, PICTURE_WIDTH, 3), 255, np.uint8)
    duration = max(len(features) * frame_seconds, len(log_probs) * output_frame_seconds, 1e-3)
    left = _MARGIN_LEFT

    if len(features):  # low mel bins at the bottom, as a spectrogram is read
        columns = _columns(len(features), frame_seconds, duration, panel_width)
        shown = columns >= 0
        bins = features.shape[1]
        rows_of_bins = (bins - 1 - np.arange(_SPECTRUM_HEIGHT) * bins // _SPECTRUM_HEIGHT).clip(0, bins - 1)
        values = features[columns[shown]][:, rows_of_bins].T
        canvas[spectrum_top : spectrum_top + _SPECTRUM_HEIGHT, left : left + panel_width][:, shown] = _colour(
            values, "magma", float(features.min()), float(features.max()))

    probabilities = np.exp(log_probs) if len(log_probs) else np.zeros((0, rows), np.float32)
    columns = _columns(len(probabilities), output_frame_seconds, duration, panel_width)
    shown = columns >= 0
    posterior = np.zeros((rows * _ROW_HEIGHT, panel_width, 3), np.uint8) + _palette("Blues")[0]
    if shown.any():  # label 0 (blank) on the bottom row
        per_row = probabilities[columns[shown]][:, ::-1].T  # (rows, shown columns), top row first
        posterior[:, shown] = _colour(np.repeat(per_row, _ROW_HEIGHT, axis=0), "Blues", 0.0, 1.0)
    canvas[posterior_top : posterior_top + rows * _ROW_HEIGHT, left : left + panel_width] = posterior

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    x_of = lambda seconds: left + seconds / duration * panel_width  # noqa: E731
    row_centre = lambda label: posterior_top + (rows - 1 - label) * _ROW_HEIGHT + _ROW_HEIGHT / 2  # noqa: E731
    draw.text((PICTURE_WIDTH / 2, 4), title or "log-mel spectrogram and CTC posteriorgram", fill="black", font=_font(11), anchor="mt")
    for fraction, text in ((0.0, "0"), (0.5, str(features.shape[1] // 2 if features.ndim == 2 else 40)),
                           (1.0, str(features.shape[1] if features.ndim == 2 else 80))):
        y = spectrum_top + _SPECTRUM_HEIGHT * (1.0 - fraction)
        draw.line((left - 4, y, left, y), fill="black")
        _put(image, (left - 6, y), text, 8, anchor="rm")
    _put(image, (4, spectrum_top + _SPECTRUM_HEIGHT / 2), "mel bin", 8, anchor="lm")
    for label in range(rows):
        _put(image, (left - 6, row_centre(label)), _label_name(labels[label]), 8, anchor="rm")
    draw.rectangle((left, spectrum_top, left + panel_width, spectrum_top + _SPECTRUM_HEIGHT), outline="black")
    draw.rectangle((left, posterior_top, left + panel_width, posterior_top + rows * _ROW_HEIGHT), outline="black")
    if len(log_probs):
        best = log_probs.argmax(axis=1)
        centres = (np.arange(len(best)) + 0.5) * output_frame_seconds
        speech = best != BLANK_INDEX
        for frame in np.flatnonzero(speech):  # the most likely label of each frame, in red
            x, y = x_of(centres[frame]), row_centre(int(best[frame]))
            draw.rectangle((x - 2, y - 2, x + 2, y + 2), fill="crimson")
        # The character each run of frames emits, written above the posteriorgram where the run starts (CTC collapse).
        for frame in np.flatnonzero(speech & np.concatenate([[True], best[1:] != best[:-1]])):
            _put(image, (x_of(centres[frame]), posterior_top - 2), _label_name(labels[best[frame]]), 11, "crimson", "mb")
    axis_y = posterior_top + rows * _ROW_HEIGHT
    step = next(step for step in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0) if duration / step <= 12)
    for tick in np.arange(0.0, duration + 1e-9, step):
        x = x_of(tick)
        draw.line((x, axis_y, x, axis_y + 4), fill="black")
        _put(image, (x, axis_y + 6), f"{tick:g}", 8, anchor="mt")
    _put(image, (left + panel_width / 2, axis_y + 22), "time (s)", 11, anchor="mt")
    return np.asarray(image)
