import shutil

import pytest
import torch

from asr.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from asr.features import FeatureConfig
from asr.model import NAMED_CONFIGS, DeepSpeech2


def test_round_trip_rebuilds_the_same_model(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    features = torch.randn(1, 50, 80)
    torch.manual_seed(0)
    original = DeepSpeech2(NAMED_CONFIGS["tiny"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(features, torch.tensor([50]))[0], original(features, torch.tensor([50]))[0])
    assert loaded.feature_config == FeatureConfig()
    assert loaded.train_info["note"] == "random weights for tests"


def test_half_precision_storage_halves_the_size(tmp_path):
    model = DeepSpeech2(NAMED_CONFIGS["small"])
    save_checkpoint(tmp_path / "full.pt", model, FeatureConfig())
    save_checkpoint(tmp_path / "half.pt", model, FeatureConfig(), half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.55 * (tmp_path / "full.pt").stat().st_size
    assert (tmp_path / "half.pt").stat().st_size < 10 * 2**20
    assert load_checkpoint(tmp_path / "half.pt").model.head.weight.dtype == torch.float32


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path, tiny_checkpoint):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(corrupt)


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


class Malicious:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Malicious()}, path)
    with pytest.raises(CheckpointError, match="unsafe unpickling"):
        load_checkpoint(path)


def test_tampered_weights_are_refused(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["state_dict"]["head.bias"] += 1.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="integrity"):
        load_checkpoint(tmp_path / "tampered.pt")


def test_mismatched_config_is_refused(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["model_config"]["rnn_hidden"] = 99
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_unknown_format_version(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_hub_reference_resolves_from_a_local_cache(tmp_path, tiny_checkpoint, monkeypatch):
    """hf:// goes through hf_hub_download; offline, it finds the file in the Hub cache layout."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--ds2-small"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    shutil.copy(tiny_checkpoint, repo / "snapshots" / commit / "model.pt")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = load_checkpoint("hf://someone/ds2-small/model.pt")
    assert loaded.model.config == NAMED_CONFIGS["tiny"]
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        load_checkpoint("hf://someone/ds2-small/other.pt")


def test_averaging_refuses_checkpoints_of_different_models(tmp_path, tiny_checkpoint):
    from dataclasses import replace

    from asr.checkpoint import average_checkpoints

    save_checkpoint(tmp_path / "deeper.pt", DeepSpeech2(replace(NAMED_CONFIGS["tiny"], rnn_layers=3)), FeatureConfig())
    with pytest.raises(CheckpointError, match="differs"):
        average_checkpoints([tiny_checkpoint, tmp_path / "deeper.pt"])
    save_checkpoint(tmp_path / "narrow.pt", DeepSpeech2(replace(NAMED_CONFIGS["tiny"], rnn_hidden=16)), FeatureConfig())
    with pytest.raises(CheckpointError, match="more than once"):  # 16 units cannot widen to tiny's 64 exactly
        average_checkpoints([tiny_checkpoint, tmp_path / "narrow.pt"])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([])


def test_a_shorter_lookahead_averages_as_the_longer_model(tmp_path, tiny_checkpoint):
    from asr.checkpoint import average_checkpoints
    from asr.model import widen_lookahead

    short = load_checkpoint(tiny_checkpoint).model
    longer = widen_lookahead(short, 5)
    torch.nn.init.normal_(longer.lookahead.conv.weight)
    save_checkpoint(tmp_path / "longer.pt", longer, FeatureConfig())
    averaged = average_checkpoints([tiny_checkpoint, tmp_path / "longer.pt"]).model
    assert averaged.config.lookahead_frames == 5
    near, far = short.config.lookahead_frames + 1, longer.lookahead.conv.weight
    torch.testing.assert_close(averaged.lookahead.conv.weight[..., :near], (short.lookahead.conv.weight + far[..., :near]) / 2)
    torch.testing.assert_close(averaged.lookahead.conv.weight[..., near:], far[..., near:] / 2)  # the short model's zeros


def test_a_widened_run_averages_with_the_narrower_file_it_started_from(tmp_path, tiny_checkpoint):
    from asr.checkpoint import average_checkpoints
    from asr.model import widen_recurrent

    start = load_checkpoint(tiny_checkpoint).model
    run = widen_recurrent(start, start.config.rnn_hidden + 16)
    run.head.weight.data += 1.0  # stands for training
    save_checkpoint(tmp_path / "run.pt", run, FeatureConfig())
    averaged = average_checkpoints([tmp_path / "run.pt", tiny_checkpoint]).model
    assert averaged.config.rnn_hidden == start.config.rnn_hidden + 16
    widened_start = widen_recurrent(start, start.config.rnn_hidden + 16)  # what the run started from, exactly
    torch.testing.assert_close(averaged.head.weight, widened_start.head.weight + 0.5)
    torch.testing.assert_close(averaged.rnns[1].rnn.weight_hh_l0, run.rnns[1].rnn.weight_hh_l0)


def test_export_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, tiny_checkpoint):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run([sys.executable, "-m", "asr", "export", str(tiny_checkpoint), str(tmp_path / "out.pt"),
                             "--average-with", str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.pt'}: checkpoint file not found"
    assert not (tmp_path / "out.pt").exists()
