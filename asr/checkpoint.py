"""One self-describing checkpoint file: weights, model config, vocabulary, feature settings, training metadata.

Loaded with torch.load(weights_only=True): a file that needs arbitrary unpickling is refused.
A reference is a local path or `hf://owner/repo/path/in/repo.pt[@revision]`, fetched through
huggingface_hub (which honours HF_HUB_OFFLINE and its local cache).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from asr.features import FeatureConfig
from asr.model import DeepSpeech2, ModelConfig, widen_lookahead, widen_recurrent
from asr.text import LABELS

FORMAT_VERSION = 1
HUB_PREFIX = "hf://"
REQUIRED_KEYS = ("format_version", "model_config", "feature_config", "labels", "state_dict", "train_info")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedCheckpoint:
    model: DeepSpeech2
    feature_config: FeatureConfig
    labels: tuple[str, ...]
    train_info: dict
    source: str


def state_digest(state_dict: dict) -> str:
    """SHA-256 over parameter names and bytes: detects weights edited after saving."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: DeepSpeech2, feature_config: FeatureConfig, train_info: dict | None = None, half: bool = False) -> None:
    """Write atomically; `half` stores float weights as float16 (the shipped model) to halve the size."""
    if model.batchnorms_folded:
        raise ValueError("refusing to save an inference copy with folded BatchNorms; save the model it was made from")
    state = {name: (t.half() if half and t.is_floating_point() else t).detach().cpu().clone() for name, t in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "feature_config": feature_config.to_dict(),
        "labels": list(LABELS),
        "state_dict": state,
        "train_info": dict(train_info or {}),
        "state_sha256": state_digest(state),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def resolve_reference(reference: str) -> Path:
    """A local path, or a Hub reference downloaded (or found in the cache) via hf_hub_download."""
    if not reference.startswith(HUB_PREFIX):
        return Path(reference)
    spec = reference[len(HUB_PREFIX):]
    spec, _, revision = spec.partition("@")
    parts = spec.split("/")
    if len(parts) < 3:
        raise CheckpointError(f"{reference}: a Hub reference looks like hf://owner/repo/file.pt[@revision]")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id="/".join(parts[:2]), filename="/".join(parts[2:]), revision=revision or None))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise CheckpointError(f"{reference}: could not fetch from the Hugging Face Hub ({type(error).__name__})") from None


def load_checkpoint(reference: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the file alone; any problem is a one-line CheckpointError."""
    path = resolve_reference(str(reference))
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe pickles
        reason = "it needs unsafe unpickling" if "weights_only" in str(error) else "it is not a readable torch checkpoint"
        raise CheckpointError(f"{path}: refused, {reason}") from None
    _check_payload(path, payload)
    try:
        model = DeepSpeech2(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
        feature_config = FeatureConfig(**payload["feature_config"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: weights do not match the model config ({str(error).splitlines()[0][:160]})") from None
    return LoadedCheckpoint(model.to(device).eval(), feature_config, tuple(payload["labels"]), payload["train_info"], str(reference))


def average_checkpoints(references: list[str | Path]) -> LoadedCheckpoint:
    """The element-wise mean of the weights of several checkpoints of one model (e.g. a run's last epochs).

    Weight averaging (as in ESPnet and fairseq recipes) smooths the noise of the last optimizer steps; whether it
    beats the best single epoch is measured, not assumed (the model card says). Models that differ only in their
    lookahead or width average as the longest and widest (model.widen_lookahead, model.widen_recurrent: a widened
    run averages with the file it started from, widened again to the same weights it started with). BatchNorm
    running statistics are averaged like weights; integer buffers (BatchNorm's step counters) and the training
    metadata come from the first checkpoint.
    """
    if not references:
        raise CheckpointError("no checkpoints to average")
    loaded = [load_checkpoint(reference) for reference in references]
    # e.g. a run widened by train --lookahead-frames and the file it started from
    frames = max(checkpoint.model.config.lookahead_frames for checkpoint in loaded)
    hidden = max(checkpoint.model.config.rnn_hidden for checkpoint in loaded)  # e.g. one widened by --rnn-hidden
    try:
        loaded = [replace(checkpoint, model=widen_recurrent(widen_lookahead(checkpoint.model, frames), hidden))
                  for checkpoint in loaded]
    except ValueError as error:
        raise CheckpointError(f"cannot average {', '.join(map(str, references))}: {error}") from None
    first = loaded[0]
    for other in loaded[1:]:
        if other.model.config != first.model.config or other.feature_config != first.feature_config:
            raise CheckpointError(f"{other.source}: its model or feature config differs from {first.source}'s; only "
                                  "checkpoints of the same model can be averaged")
    states = [checkpoint.model.state_dict() for checkpoint in loaded]
    averaged = {name: torch.stack([state[name] for state in states]).mean(dim=0) if tensor.is_floating_point() else tensor
                for name, tensor in states[0].items()}
    first.model.load_state_dict(averaged)
    info = {**first.train_info, "averaged_from": [str(reference) for reference in references]}
    return LoadedCheckpoint(first.model, first.feature_config, first.labels, info, ",".join(map(str, references)))


def _check_payload(path: Path, payload) -> None:
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this project (top level is {type(payload).__name__})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {', '.join(missing)})")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {payload['format_version']} is not supported (expected {FORMAT_VERSION})")
    if tuple(payload["labels"]) != LABELS:
        raise CheckpointError(f"{path}: its vocabulary differs from this code's ({len(payload['labels'])} labels)")
    expected = payload.get("state_sha256")
    if expected is None or state_digest(payload["state_dict"]) != expected:
        raise CheckpointError(f"{path}: weights fail their integrity check (the file was modified after it was saved)")
