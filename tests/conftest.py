"""Shared fixtures: a tiny random checkpoint, and spoken test clips made with espeak-ng when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.checkpoint import save_checkpoint
from asr.features import FeatureConfig
from asr.model import NAMED_CONFIGS, DeepSpeech2

REPO_ROOT = Path(__file__).resolve().parent.parent


def random_eval_model(config, seed: int = 0, model_class: type[DeepSpeech2] = DeepSpeech2) -> DeepSpeech2:
    """Random weights with non-trivial BatchNorm statistics and normalisation, so every part of the model matters."""
    torch.manual_seed(seed)
    model = model_class(config)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.feature_mean.uniform_(-1, 1)
    model.feature_std.uniform_(0.5, 2)
    return model.eval()


def word_chain_arpa(words: list[tuple[str, float]]) -> str:
    """A hand-written ARPA: the given unigrams (log10 probs) and the bigram chain <s> w1 w2 ... </s>.

    Small enough to reason about in a test, strong enough for the LM to change what beam search prefers."""
    chain = ["<s>"] + [word for word, _ in words] + ["</s>"]
    bigrams = [f"{-0.2 if i in (0, len(chain) - 2) else -0.3}\t{a} {b}" for i, (a, b) in enumerate(zip(chain, chain[1:]))]
    unigrams = ["-1.0\t<unk>\t0", "-99\t<s>\t-0.3", "-1.0\t</s>\t0"] + [f"{logp}\t{word}\t-0.2" for word, logp in words]
    return "\n".join(["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:", *unigrams,
                      "", "\\2-grams:", *bigrams, "", "\\end\\", ""])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny model saved in the real format (fast to load and run)."""
    torch.manual_seed(0)
    model = DeepSpeech2(NAMED_CONFIGS["tiny"]).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, FeatureConfig(), {"note": "random weights for tests"})
    return path


def speak(text: str, path: Path, voice: str = "en-us", rate: int = 16000) -> Path:
    """Synthesize `text` with espeak-ng into a WAV at `rate`."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
    samples, native_rate = soundfile.read(str(raw), dtype="float32")
    raw.unlink()
    if native_rate != rate:
        import torchaudio

        samples = torchaudio.functional.resample(torch.from_numpy(samples), native_rate, rate).numpy()
    soundfile.write(str(path), samples, rate)
    return path


@pytest.fixture(scope="session")
def spoken_clip(tmp_path_factory) -> Path:
    return speak("the quick brown fox jumps over the lazy dog", tmp_path_factory.mktemp("clips") / "fox.wav")


@pytest.fixture()
def noise_wav(tmp_path) -> Path:
    path = tmp_path / "noise.wav"
    soundfile.write(str(path), (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32), 16000)
    return path


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (minutes each)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; skipped unless pytest is given --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
