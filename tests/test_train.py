"""The training loop learns (a tiny model overfits a few utterances) and DDP keeps ranks identical."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dataclasses import replace

from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.features import FeatureConfig
from asr.model import NAMED_CONFIGS, DeepSpeech2
from asr.data.manifest import ManifestEntry, read_manifest, write_manifest
from asr.train import TrainConfig, train
from tests.conftest import REPO_ROOT, speak

PHRASES = ["hello world", "good morning", "open the door", "thank you"]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    entries = []
    for index, text in enumerate(PHRASES):
        path = speak(text, folder / f"utt{index}.wav")
        import soundfile

        entries.append(ManifestEntry(path, soundfile.info(str(path)).duration, text))
    write_manifest(folder / "train.jsonl", entries)
    return folder / "train.jsonl"


def test_tiny_model_overfits_a_handful_of_utterances(tiny_corpus, tmp_path):
    config = TrainConfig(train_manifest=str(tiny_corpus), dev_manifest=str(tiny_corpus), out_dir=str(tmp_path / "run"),
                         model="tiny", epochs=250, batch_seconds=60, max_batch_size=8, learning_rate=4e-3, warmup_steps=20,
                         augment=False, spec_augment=False, num_workers=0, device="cpu", eval_every=25, log_every=1000)
    best = train(config)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["dev_cer"]) < 0.05, rows[-1]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) / 5
    assert load_checkpoint(best).train_info["dev_cer"] < 0.05


def test_two_process_ddp_ends_with_identical_weights(tiny_corpus, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "asr", "train", "--train", str(tiny_corpus), "--out", str(tmp_path / "ddp"), "--model", "tiny",
               "--max-steps", "100000", "--epochs", "100000", "--time-limit-minutes", "0.05", "--num-workers", "0",
               "--no-augment", "--device", "cpu", "--batch-seconds", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    checksums = dict(re.findall(r"rank (\d) final weights checksum ([0-9a-f]{16})", result.stdout))
    assert set(checksums) == {"0", "1"}, result.stdout[-2000:]
    assert checksums["0"] == checksums["1"]
    # The clock stopped it (rank 0's clock, shared, so both ranks stopped at the same step and used the same rates).
    stopped = re.search(r"time limit of 0.05 min reached after (\d+) steps", result.stdout)
    assert stopped and int(stopped.group(1)) > 0, result.stdout[-2000:]
    assert load_checkpoint(tmp_path / "ddp" / "last.pt").train_info["steps"] == int(stopped.group(1))


def warm_started_one_step(tiny_corpus, tmp_path, warm: DeepSpeech2, run: str = "run", **overrides) -> DeepSpeech2:
    """`tiny` after one step from `warm`'s weights, at a negligible learning rate unless `overrides` set one: what
    --init-from made of them."""
    save_checkpoint(tmp_path / "warm.pt", warm, FeatureConfig())
    settings = dict(learning_rate=1e-9, weight_decay=0.0) | overrides
    config = TrainConfig(train_manifest=str(tiny_corpus), out_dir=str(tmp_path / run), model="tiny", max_steps=1,
                         augment=False, spec_augment=False, num_workers=0, device="cpu",
                         init_from=str(tmp_path / "warm.pt"), **settings)
    return load_checkpoint(train(config)).model


def test_init_from_takes_weights_of_equal_shapes_even_at_another_time_stride(tiny_corpus, tmp_path):
    warm = DeepSpeech2(replace(NAMED_CONFIGS["tiny"], conv_time_strides=(1, 1)))
    torch.nn.init.normal_(warm.head.weight)
    trained = warm_started_one_step(tiny_corpus, tmp_path, warm)
    assert trained.config == NAMED_CONFIGS["tiny"]  # the new stride, the old weights
    assert torch.allclose(trained.head.weight, warm.head.weight, atol=1e-5)


def test_init_from_widens_the_lookahead_with_zero_taps_when_asked_for_more(tiny_corpus, tmp_path):
    warm = DeepSpeech2(NAMED_CONFIGS["tiny"])
    torch.nn.init.normal_(warm.lookahead.conv.weight)
    trained = warm_started_one_step(tiny_corpus, tmp_path, warm, lookahead_frames=5)
    assert trained.config == replace(NAMED_CONFIGS["tiny"], lookahead_frames=5)
    taps = trained.lookahead.conv.weight
    torch.testing.assert_close(taps[..., :3], warm.lookahead.conv.weight, atol=1e-5, rtol=0)
    assert taps[..., 3:].abs().max() < 1e-5


def test_init_from_widens_the_recurrent_layers_to_the_same_function_when_asked_for_more(tiny_corpus, tmp_path):
    from asr.model import widen_recurrent

    warm = DeepSpeech2(NAMED_CONFIGS["tiny"])
    trained = warm_started_one_step(tiny_corpus, tmp_path, warm, rnn_hidden=80)
    assert trained.config == replace(NAMED_CONFIGS["tiny"], rnn_hidden=80)
    expected = widen_recurrent(warm, 80)
    torch.testing.assert_close(trained.rnns[1].rnn.weight_hh_l0, expected.rnns[1].rnn.weight_hh_l0, atol=1e-5, rtol=0)
    with pytest.raises(SystemExit, match="more than once"):
        warm_started_one_step(tiny_corpus, tmp_path, warm, run="too-wide", rnn_hidden=200)


def test_dropout_reaches_the_training_step_and_leaves_no_trace_in_the_checkpoint(tiny_corpus, tmp_path):
    warm, step = DeepSpeech2(NAMED_CONFIGS["tiny"]), dict(learning_rate=1e-3, warmup_steps=1)
    plain = warm_started_one_step(tiny_corpus, tmp_path, warm, run="plain", dropout=0.0, **step)
    dropped = warm_started_one_step(tiny_corpus, tmp_path, warm, run="dropped", dropout=0.3, **step)
    # Same seed, data and start: only the dropout masks can make the one step differ.
    assert not torch.allclose(plain.head.weight, dropped.head.weight)
    assert dropped.config == NAMED_CONFIGS["tiny"] and dropped.dropout == 0.0  # loaded for inference
    assert load_checkpoint(tmp_path / "dropped" / "last.pt").train_info["train_config"]["dropout"] == 0.3


def test_init_from_refuses_weights_of_other_shapes(tiny_corpus, tmp_path):
    save_checkpoint(tmp_path / "other.pt", DeepSpeech2(replace(NAMED_CONFIGS["tiny"], rnn_layers=3)), FeatureConfig())
    config = TrainConfig(train_manifest=str(tiny_corpus), out_dir=str(tmp_path / "run"), model="tiny", max_steps=1,
                         augment=False, spec_augment=False, num_workers=0, device="cpu", init_from=str(tmp_path / "other.pt"))
    with pytest.raises(SystemExit, match="different weight shapes"):
        train(config)


def test_learning_rate_decays_by_steps_or_time_whichever_is_further():
    from asr.train import learning_rate_at

    config = TrainConfig(learning_rate=1e-3, warmup_steps=10)
    assert learning_rate_at(4, config, 1000, time_fraction=0.9) == pytest.approx(5e-4)  # warmup is by steps alone
    assert learning_rate_at(10, config, 1000) == pytest.approx(1e-3)
    assert learning_rate_at(10, config, 1000, time_fraction=1.0) == pytest.approx(5e-5)  # the floor, 5 % of the peak
    halfway = learning_rate_at(505, config, 1000)
    assert learning_rate_at(505, config, 1000, time_fraction=0.2) == pytest.approx(halfway)  # steps further along
    assert learning_rate_at(505, config, 1000, time_fraction=0.8) < halfway


def test_time_limit_ends_a_run_with_an_evaluated_checkpoint(tiny_corpus, tmp_path):
    config = TrainConfig(train_manifest=str(tiny_corpus), dev_manifest=str(tiny_corpus), out_dir=str(tmp_path / "run"),
                         model="tiny", epochs=100000, batch_seconds=60, warmup_steps=1, augment=False, spec_augment=False, num_workers=0,
                         device="cpu", time_limit_minutes=0.03, eval_every=100000)
    best = train(config)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 1 and 0 < int(rows[0]["epoch"]) < 100000  # only the epoch the clock ended was evaluated
    assert float(rows[0]["wall_seconds"]) < 30
    assert float(rows[0]["lr"]) == pytest.approx(config.learning_rate * 0.05, rel=0.2)  # decayed to the floor by time
    assert load_checkpoint(best).train_info["epochs_done"] == int(rows[0]["epoch"]) + 1


def test_augment_config_follows_the_speed_and_room_settings():
    from asr.train import augment_config

    augment = augment_config(TrainConfig(speed_prob=0.8, speed_spread=0.2, augment_scale=0.5))
    assert augment.speed_prob == 0.8 and augment.speed_range == pytest.approx((0.8, 1.2))
    assert augment.noise_prob == pytest.approx(0.3)  # 0.6 by default, halved


def test_kept_epoch_checkpoints_average_into_one_shippable_file(tiny_corpus, tmp_path):
    config = TrainConfig(train_manifest=str(tiny_corpus), dev_manifest=str(tiny_corpus), out_dir=str(tmp_path / "run"),
                         model="tiny", epochs=2, batch_seconds=60, learning_rate=1e-2, warmup_steps=1, augment=False,
                         spec_augment=False, num_workers=0, device="cpu", keep_epoch_checkpoints=True)
    train(config)
    run = tmp_path / "run"
    first, second = (load_checkpoint(run / name).model.state_dict() for name in ("epoch000.pt", "epoch001.pt"))
    assert torch.equal(second["head.weight"], load_checkpoint(run / "last.pt").model.head.weight)
    assert not torch.equal(first["head.weight"], second["head.weight"])  # one epoch of training moved them
    command = [sys.executable, "-m", "asr", "export", str(run / "epoch001.pt"), str(tmp_path / "avg.pt"),
               "--average-with", str(run / "epoch000.pt"), "--full-precision"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    averaged = load_checkpoint(tmp_path / "avg.pt")
    for name, tensor in averaged.model.state_dict().items():
        expected = (first[name] + second[name]) / 2 if tensor.is_floating_point() else second[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6, msg=name)
    assert averaged.train_info["averaged_from"] == [str(run / "epoch001.pt"), str(run / "epoch000.pt")]
    assert averaged.train_info["weights_dtype"] == "float32"


def test_max_chars_per_second_leaves_out_the_fastest_utterances(tiny_corpus, tmp_path, capsys):
    rates = sorted(len(e.text) / e.duration for e in read_manifest(tiny_corpus))
    threshold = (rates[1] + rates[2]) / 2  # between the second and third slowest of the four
    config = TrainConfig(train_manifest=str(tiny_corpus), out_dir=str(tmp_path / "run"), model="tiny", epochs=1,
                         batch_seconds=60, warmup_steps=1, augment=False, spec_augment=False, num_workers=0,
                         device="cpu", max_chars_per_second=threshold)
    train(config)
    output = capsys.readouterr().out
    assert "left out 2 of 4 training utterances" in output
    assert "; 2 train utterances" in output
    with pytest.raises(SystemExit, match="leaves no training utterance"):
        train(replace(config, out_dir=str(tmp_path / "none"), max_chars_per_second=rates[0] / 2))


@pytest.mark.parametrize("flags", [["--vtlp-band-spread", "0.5"], ["--vtlp-prob", "1.5"], ["--speed-prob", "-0.1"],
                                   ["--spec-time-masks", "-1"], ["--rnn-hidden", "-1"], ["--dropout", "1"]])
def test_train_cli_turns_away_out_of_range_flags_before_loading_data(tmp_path, flags):
    command = [sys.executable, "-m", "asr", "train", "--train", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "run"), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert flags[0] in result.stderr and not (tmp_path / "run").exists()
