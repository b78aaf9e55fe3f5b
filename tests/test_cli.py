"""The real command line, run as a subprocess: output contract, chunked == offline, bad files."""

import json
import os
import subprocess
import sys

import pytest
import soundfile

from tests.conftest import REPO_ROOT, word_chain_arpa


def run_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=env)


def test_json_output_and_chunked_equals_offline(tiny_checkpoint, spoken_clip):
    offline = run_cli("transcribe", "--json", "--no-lm", "--model", tiny_checkpoint, spoken_clip)
    assert offline.returncode == 0, offline.stderr
    record = json.loads(offline.stdout.strip())
    assert set(record) == {"file", "duration_s", "greedy", "beam", "rtf"}
    assert record["duration_s"] == pytest.approx(soundfile.info(str(spoken_clip)).duration, abs=1e-3)
    for chunk_ms in (160, 500):
        chunked = run_cli("transcribe", "--json", "--no-lm", "--model", tiny_checkpoint, "--chunk-ms", chunk_ms, spoken_clip)
        assert chunked.returncode == 0, chunked.stderr
        streamed = json.loads(chunked.stdout.strip())
        assert (streamed["greedy"], streamed["beam"]) == (record["greedy"], record["beam"])


def test_bad_file_reports_one_line_and_others_still_run(tiny_checkpoint, spoken_clip, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(spoken_clip.read_bytes()[:30])
    result = run_cli("transcribe", "--json", "--no-lm", "--model", tiny_checkpoint, empty, spoken_clip, text, truncated, tmp_path / "missing.wav")
    assert result.returncode != 0
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["file"] for line in lines] == [str(spoken_clip)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("error: ") for e in errors), result.stderr
    assert "Traceback" not in result.stderr
    assert "empty" in errors[0] and "missing.wav" in errors[3]


def test_missing_model_and_missing_lm(tiny_checkpoint, spoken_clip, tmp_path):
    result = run_cli("transcribe", "--model", tmp_path / "none.pt", spoken_clip)
    assert result.returncode == 2 and "none.pt" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("transcribe", "--json", "--model", tiny_checkpoint, "--lm", tmp_path / "none.binary", spoken_clip)
    assert result.returncode == 0
    assert "warning" in result.stderr.lower() and "none.binary" in result.stderr
    assert json.loads(result.stdout)["beam"] is not None


def test_cuda_request_without_cuda_is_one_line(tiny_checkpoint, spoken_clip):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("transcribe", "--device", "cuda", "--model", tiny_checkpoint, spoken_clip)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "CUDA is not available" in result.stderr


def test_evaluate_and_tune_lm_print_their_tables(tiny_checkpoint, spoken_clip, tmp_path):
    import soundfile as sf

    from asr.data.manifest import ManifestEntry, write_manifest

    text = "the quick brown fox jumps over the lazy dog"
    write_manifest(tmp_path / "m.jsonl", [ManifestEntry(spoken_clip, sf.info(str(spoken_clip)).duration, text)] * 2)
    result = run_cli("evaluate", tmp_path / "m.jsonl", "--model", tiny_checkpoint, "--beam-width", 4)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert {"greedy", "beam", "beam+lm"} <= set(rows)
    assert float(rows["greedy"][1]) >= 90.0  # random weights: almost every word wrong
    without_lm = run_cli("evaluate", tmp_path / "m.jsonl", "--model", tiny_checkpoint, "--beam-width", 4, "--no-lm")
    assert without_lm.returncode == 0, without_lm.stderr
    assert [line.split()[0] for line in without_lm.stdout.splitlines()[1:3]] == ["greedy", "beam"]
    assert "beam+lm" not in without_lm.stdout
    result = run_cli("tune-lm", tmp_path / "m.jsonl", "--model", tiny_checkpoint, "--beam-width", 4, "--alphas", "0,1", "--betas", "0,1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("best: --alpha")


def test_evaluate_by_folder_scores_each_voice_folder_on_its_own(tiny_checkpoint, spoken_clip, tmp_path):
    import json
    import shutil

    import soundfile as sf

    from asr.data.manifest import ManifestEntry, write_manifest

    duration = sf.info(str(spoken_clip)).duration
    entries = []
    for folder, count in (("voice-a", 2), ("voice-b", 1)):
        (tmp_path / folder).mkdir()
        for index in range(count):
            target = tmp_path / folder / f"{index}.wav"
            shutil.copy(spoken_clip, target)
            entries.append(ManifestEntry(target, duration, "the quick brown fox" if folder == "voice-a" else "hello"))
    write_manifest(tmp_path / "m.jsonl", entries)
    result = run_cli("evaluate", tmp_path / "m.jsonl", "--model", tiny_checkpoint, "--beam-width", 4, "--by-folder", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.splitlines()[0])
    greedy = next(row for row in rows if row["decoder"] == "greedy")
    assert {name: group["utterances"] for name, group in greedy["groups"].items()} == {"voice-a": 2, "voice-b": 1}
    # the same audio gives the same hypothesis in both folders, so the scores differ only through the references
    assert greedy["groups"]["voice-a"]["cer"] != greedy["groups"]["voice-b"]["cer"]
    table = run_cli("evaluate", tmp_path / "m.jsonl", "--model", tiny_checkpoint, "--beam-width", 4, "--by-folder")
    assert table.returncode == 0 and "voice-a" in table.stdout and "voice-b" in table.stdout


def test_transcript_documents_txt_srt_json(tiny_checkpoint, spoken_clip, tmp_path):
    """--format writes what the demo exports: JSON with every decoder, n-best and timed words; SRT from those times."""
    arpa = tmp_path / "words.arpa"
    arpa.write_text(word_chain_arpa([("xq", -0.6), ("dx", -0.8), ("qd", -0.9)]))
    result = run_cli("transcribe", "--format", "json", "--model", tiny_checkpoint, "--lm", arpa, "--beam-width", 8, spoken_clip)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["file"] == str(spoken_clip) and document["beam_settings"]["language_model"] is True
    utterances = document["utterances"]
    assert utterances and all(set(u) >= {"greedy", "beam", "beam_lm", "best", "n_best", "words"} for u in utterances)
    for utterance in utterances:
        assert utterance["beam"] is not None and utterance["beam_lm"] == utterance["best"]
        assert " ".join(w["word"] for w in utterance["words"]) == utterance["beam_lm"]
        assert all(utterance["start"] <= w["start"] < w["end"] <= utterance["end"] + 0.1 and 0 <= w["confidence"] <= 1
                   for w in utterance["words"])
        top = utterance["n_best"][0]
        assert top["text"] == utterance["beam_lm"]
        assert top["acoustic"] + top["language_model"] + top["word_bonus"] + top["hotwords"] == pytest.approx(top["total"])

    out = tmp_path / "out"
    written = run_cli("transcribe", "--format", "srt", "--output-dir", out, "--model", tiny_checkpoint, "--lm", arpa,
                      "--beam-width", 8, spoken_clip)
    assert written.returncode == 0, written.stderr
    srt = (out / f"{spoken_clip.stem}.srt").read_text()
    words = [w for u in utterances for w in u["words"]]
    assert srt.startswith("1\n") and " --> " in srt
    assert " ".join(block.split("\n", 2)[2].replace("\n", " ") for block in srt.strip().split("\n\n")) == " ".join(w["word"] for w in words)

    text = run_cli("transcribe", "--format", "txt", "--model", tiny_checkpoint, "--lm", arpa, "--beam-width", 8, spoken_clip)
    assert text.stdout.splitlines() == [u["best"] for u in utterances]
    clash = run_cli("transcribe", "--format", "txt", "--json", "--model", tiny_checkpoint, spoken_clip)
    assert clash.returncode == 2 and "choose one" in clash.stderr


@pytest.mark.parametrize("command", ["evaluate", "tune-lm"])
def test_scoring_a_bad_manifest_says_why_in_one_line(command, tiny_checkpoint, spoken_clip, tmp_path):
    """A WER over nothing, or over the clips that happened to load, is not a figure: each case stops with its reason."""
    import soundfile as sf

    from asr.data.manifest import ManifestEntry, write_manifest

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "malformed.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file")
    write_manifest(tmp_path / "corrupt.jsonl", [ManifestEntry(spoken_clip, sf.info(str(spoken_clip)).duration, "a clip"),
                                                ManifestEntry(corrupt, 1.0, "a corrupt clip")])
    expected = {"missing.jsonl": "manifest not found", "empty.jsonl": "lists no utterances",
                "malformed.jsonl": "missing field", "corrupt.jsonl": "corrupt.wav: not a readable audio file"}
    for manifest, reason in expected.items():
        result = run_cli(command, tmp_path / manifest, "--model", tiny_checkpoint, "--beam-width", 4, "--no-lm")
        assert result.returncode == 2, (manifest, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and reason in errors[0], (manifest, result.stderr)
