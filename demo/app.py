"""The browser demo: speak and watch greedy CTC and beam search (+ KenLM) transcripts grow side by side.

    python demo/app.py      # http://localhost:7860 (GRADIO_SERVER_PORT respected)

ASR_MODEL, ASR_LM and ASR_DEVICE override the shipped model, the shipped LM and the device (auto);
ASR_MAX_RECORDINGS the number of streams decoded at once and ASR_WAITING_RECORDINGS the recordings that may wait
beside them with their audio kept (defaults: measured, see demo/capacity.py), ASR_QUEUE_SIZE Gradio's queue below.
This file is layout and wiring only: handlers.py does the work, render.py draws it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python demo/app.py` (and Hugging Face Spaces) put demo/ first, not the repo
    sys.path.insert(0, str(REPO_ROOT))

import gradio as gr  # noqa: E402

from asr.checkpoint import CheckpointError  # noqa: E402
from asr.device import DeviceError  # noqa: E402
from demo import handlers, render  # noqa: E402
from demo.chunk_gate import gate_middleware  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
STREAM_EVERY_SECONDS = 0.4
MAX_RECORDING_SECONDS = 600
SESSION_IDLE_SECONDS = 1800  # a tab silent this long loses its stream and history (it starts afresh)
MAX_UPLOAD = "50mb"  # Gradio refuses bigger uploads; handlers.UPLOAD_MAX_BYTES checks again
# Overload (bench/load.py, bench/RESULTS.md "Load"). Decoding every recording at once starves the server: with 16
# recordings on 2 shared cores Gradio dropped 4-50 % of the chunks (one that arrives while the previous one is still
# being handled replaces it) and words showed 12 s late. So only as many streams decode at once as the cores allow at
# the measured cost of one (demo/capacity.py: the engine's slots); the recordings beyond them still have their chunks
# handled (the audio is kept, up to session.MAX_WAITING_SECONDS) and wait in line with their position on the page,
# then catch up. Their chunks still cost Gradio's transport, so only engine.waiting_recordings may do that; past them a
# new recording waits in Gradio's queue (the page tells the person not to speak yet), and past QUEUE_SIZE waiting
# events new ones are refused ("queue is full").
QUEUE_SIZE = 32
TICK_SECONDS = 2.0  # a waiting or catching-up tab, and the busy notice, refresh this often
EVENTS_AT_ONCE = 4  # every other event (page load, Stop, settings, uploads at 2) per listener
# A click on a finished utterance (anywhere in its paragraph) tells the server which one; listening on the component's
# own element keeps working while its HTML is replaced with every update.
CLICK_TO_SELECT = """element.addEventListener('click', event => {
  const line = event.target.closest('[data-utterance]');
  if (line) trigger('click', {utterance: Number(line.dataset.utterance)});
});"""


def example_rows() -> tuple[list[list[str]], list[str]]:
    """The shipped example clips, labelled with what is said in them."""
    import json

    listing = EXAMPLES_DIR / "examples.json"
    if not listing.is_file():
        return [], []
    entries = json.loads(listing.read_text())
    entries = [e for e in entries if (EXAMPLES_DIR / e["file"]).is_file()]
    return [[str(EXAMPLES_DIR / e["file"])] for e in entries], [f'“{e["text"]}” ({e["voice"]})' for e in entries]


def build_app(engine: handlers.Engine) -> gr.Blocks:
    defaults = handlers.default_controls(engine)
    with gr.Blocks(title="Streaming Deep Speech 2", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Streaming Deep Speech 2\n"
            "Speak, and watch two transcripts of the same model grow as you talk: **greedy CTC** on the left, "
            "**beam search with a KenLM language model** on the right. Words where they differ are highlighted; "
            "switch on the middle column to see what the language model alone changes. A pause closes an utterance; "
            "finished utterances stay above the one in progress: hover a word for its time and confidence (shaded: "
            "the acoustic model was unsure), click an utterance to hear it and see its best hypotheses.\n\n"
            f"Model `{engine.model_name}` · language model `{engine.lm_name}` · device `{engine.device}`"
        )
        notice = gr.HTML(elem_id="notice")
        session = gr.State(None, time_to_live=SESSION_IDLE_SECONDS, delete_callback=handlers.close_session)

        with gr.Tabs():
            with gr.Tab("Microphone", id="microphone"):
                microphone = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                                      elem_id="microphone")
                capacity = gr.HTML(elem_id="capacity")
            with gr.Tab("Upload a file", id="upload"):
                upload = gr.Audio(sources=["upload"], type="filepath", label="Audio file (up to 50 MB / 10 min)",
                                  elem_id="upload")
                rows, labels = example_rows()
                if rows:
                    gr.Examples(rows, inputs=[upload], example_labels=labels, label="Example clips (voices and sentences the model never trained on)",
                                elem_id="examples")

        transcripts = gr.HTML(elem_id="transcripts", js_on_load=CLICK_TO_SELECT)
        with gr.Accordion("Best hypotheses of the beam search (n-best), scores split", open=True):
            n_best = gr.HTML(elem_id="nbest")
        with gr.Row():
            with gr.Column(scale=1):
                figures = gr.HTML(elem_id="figures")
                with gr.Accordion("Beam search settings (apply from the next utterance)", open=True):
                    use_lm = gr.Checkbox(value=defaults.use_lm, label="Use the language model")
                    compare = gr.Checkbox(value=defaults.compare_without_lm, elem_id="compare",
                                          label="Also show beam search without the LM (middle column)")
                    beam_width = gr.Slider(1, handlers.MAX_BEAM_WIDTH, value=defaults.beam_width, step=1, label="Beam width")
                    alpha = gr.Slider(0.0, 3.0, value=defaults.alpha, step=0.05, label="α: language model weight")
                    beta = gr.Slider(-2.0, 5.0, value=defaults.beta, step=0.1, label="β: word insertion bonus")
                    hotwords = gr.Textbox(value=defaults.hotwords, label="Hotwords (comma-separated; Enter to apply)",
                                          placeholder="e.g. deep speech, kenlm")
                player = gr.Audio(label="Clicked utterance", type="numpy", autoplay=True, interactive=False, elem_id="player")
                with gr.Group():
                    export_format = gr.Radio(["txt", "srt", "json"], value="txt", label="Export finished utterances as",
                                             elem_id="export-format")
                    export = gr.Button("Export transcript", elem_id="export-button")
                    exported = gr.File(label="Transcript file", interactive=False, elem_id="export-file")
                clear = gr.Button("Clear history")
            with gr.Column(scale=2):
                gr.Markdown("**Last finished utterance**: log-mel spectrogram, and under it on the same time axis the "
                            "CTC posteriorgram (shade: probability of each character per output frame; red: the most likely one, "
                            "with the characters greedy decoding emits written on top)")
                picture = gr.Image(show_label=False, type="numpy", interactive=False, elem_id="picture",
                                   buttons=["download", "fullscreen"])

        # Two hidden values the page watches: the picture is fetched only when its token changes, and the timer only
        # moves the refresh token when a view is due. (A gr.skip() output is not free in Gradio 6: it rebuilds the
        # component and its config on every update, which cost more than all the decoding under load.)
        picture_token = gr.Textbox(elem_id="picture-token", elem_classes=["hidden-token"], show_label=False, container=False, interactive=False)
        refresh_token = gr.Textbox(elem_id="refresh-token", elem_classes=["hidden-token"], show_label=False, container=False, interactive=False)
        controls = [use_lm, beam_width, alpha, beta, hotwords, compare]
        shown = [session, transcripts, figures, notice, picture_token, n_best, capacity]

        def read_controls(values) -> handlers.Controls:
            use, width, weight, bonus, words, third = values
            return handlers.Controls(use_lm=bool(use), beam_width=int(width), alpha=float(weight), beta=float(bonus), hotwords=words or "",
                                     compare_without_lm=bool(third))

        def show(result: tuple[handlers.Session, handlers.View]):
            state, view = result[:2]
            return state, view.transcripts, view.figures, view.notice, view.picture_token, view.n_best, view.capacity

        def tick(state, token):
            return str(int(token or 0) + 1) if handlers.needs_refresh(state) else token

        def refresh(state):
            return show((state, handlers.view_of(state))) if state is not None else tuple(gr.skip() for _ in shown)

        def line_clicked(state, event: gr.EventData):
            data = event._data if isinstance(getattr(event, "_data", None), dict) else {}
            result = handlers.on_select_line(engine, state, data.get("utterance"))
            return *show(result), (result[2] if result[2] is not None else gr.skip())

        def export_clicked(state, fmt):
            result = handlers.on_export(engine, state, fmt)
            return *show(result), result[2]

        def load(state, *values):
            return show(handlers.on_load(engine, state, read_controls(values)))

        def controls_changed(state, *values):
            return show(handlers.on_controls_change(engine, state, read_controls(values)))

        def record_start(state):
            return show(handlers.on_record_start(engine, state))

        def microphone_chunk(state, audio, *values):
            return show(handlers.on_microphone_chunk(engine, state, audio, read_controls(values)))

        def record_stop(state):
            return show(handlers.on_record_stop(engine, state))

        def file_chosen(state, path, *values):
            for result in handlers.on_file(engine, state, path, read_controls(values)):
                yield show(result)

        def clear_history(state):
            return show(handlers.on_clear(engine, state))

        def end_session(request: gr.Request):
            """The tab closed: free its stream now rather than when Gradio's one-hour grace period ends."""
            holder = getattr(demo, "state_holder", None)
            if holder is not None and request is not None and request.session_hash:
                holder.delete_state(request.session_hash)  # calls close_session on this tab's state

        quiet = dict(show_progress="hidden", queue=True)
        demo.load(load, [session, *controls], shown, **quiet)
        for slider in (beam_width, alpha, beta):
            slider.release(controls_changed, [session, *controls], shown, **quiet)
        use_lm.input(controls_changed, [session, *controls], shown, **quiet)
        compare.input(controls_changed, [session, *controls], shown, **quiet)
        transcripts.click(line_clicked, [session], [*shown, player], **quiet)
        export.click(export_clicked, [session, export_format], [*shown, exported], **quiet)
        hotwords.submit(controls_changed, [session, *controls], shown, **quiet)
        hotwords.blur(controls_changed, [session, *controls], shown, **quiet)
        microphone.start_recording(record_start, [session], shown, **quiet)
        microphone.stream(microphone_chunk, [session, microphone, *controls], shown, stream_every=STREAM_EVERY_SECONDS,
                          time_limit=MAX_RECORDING_SECONDS, concurrency_limit=engine.admission.slots + engine.waiting_recordings, **quiet)
        gr.Timer(TICK_SECONDS).tick(tick, [session, refresh_token], [refresh_token], **quiet)
        refresh_token.change(refresh, [session], shown, **quiet)
        picture_token.change(handlers.picture_of, [session], [picture], **quiet)
        microphone.stop_recording(record_stop, [session], shown, **quiet)
        upload.change(file_chosen, [session, upload, *controls], shown, concurrency_limit=2, **quiet)
        clear.click(clear_history, [session], shown, **quiet)
        demo.unload(end_session)
    return demo


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("demo").setLevel(logging.INFO)
    slots = _positive_int("ASR_MAX_RECORDINGS", None)
    waiting, queue_size = _positive_int("ASR_WAITING_RECORDINGS", None, least=0), _positive_int("ASR_QUEUE_SIZE", QUEUE_SIZE)
    try:
        engine = handlers.load_engine(os.environ.get("ASR_MODEL") or None, os.environ.get("ASR_LM") or None,
                                      os.environ.get("ASR_DEVICE") or "auto", slots=slots, waiting=waiting)
    except (CheckpointError, DeviceError) as error:
        sys.exit(f"error: {error} (ASR_MODEL and ASR_DEVICE choose another model or device)")
    demo = build_app(engine)
    demo.queue(default_concurrency_limit=EVENTS_AT_ONCE, max_size=queue_size)
    demo.launch(css=render.CSS, max_file_size=MAX_UPLOAD, ssr_mode=False, show_error=False,
                app_kwargs={"middleware": [gate_middleware(demo)]})  # no microphone chunk lost to a busy handler


def _positive_int(name: str, default: int | None, least: int = 1) -> int | None:
    value = os.environ.get(name) or (None if default is None else str(default))
    if value is None:
        return None
    if not value.isdigit() or int(value) < least:
        sys.exit(f"error: {name} must be a whole number of at least {least}, got {value!r}")
    return int(value)


if __name__ == "__main__":
    main()
