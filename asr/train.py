"""Training recipe: data, model, CTC loop, evaluation, checkpoint. One process on CPU, or DDP under torchrun.

    python -m asr train --train data/synth/train.jsonl --dev data/synth/dev.jsonl --out runs/small
    torchrun --nproc_per_node 2 -m asr train ...      # DistributedDataParallel (gloo on CPU, nccl on GPU)

Resumable: re-running with the same --out continues from runs/.../resume.pt.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import jiwer
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from asr.checkpoint import load_checkpoint, save_checkpoint, state_digest
from asr.data.augment import MAX_BAND_SPREAD, AugmentConfig, SpecAugment, VocalTractWarp, WaveformAugmenter
from asr.data.batching import LengthBatchSampler
from asr.data.dataset import SpeechDataset, collate_batch
from asr.data.manifest import read_manifest
from asr.decoding import GreedyDecoder
from asr.device import resolve_device
from asr.features import FeatureConfig
from asr.model import NAMED_CONFIGS, DeepSpeech2, count_parameters, widen_lookahead, widen_recurrent


@dataclass
class TrainConfig:
    train_manifest: str = ""
    dev_manifest: str = ""
    out_dir: str = "runs/small"
    model: str = "small"
    epochs: int = 20
    batch_seconds: float = 64.0  # padded audio per batch
    max_batch_size: int = 32
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    grad_clip: float = 5.0
    augment: bool = True
    # Multiplies the microphone/room augmentation probabilities (EQ, reverberation, noise, gain). Heavy augmentation
    # (1.0) is what a real microphone needs, but with a few CPU hours of training it costs accuracy on clean speech.
    augment_scale: float = 1.0
    # Speed perturbation: factors drawn from 1 +- speed_spread with probability speed_prob. Besides speaking rate it
    # shifts pitch and formants together, so a few natural-sounding training voices stand for more talkers.
    speed_prob: float = 0.5
    speed_spread: float = 0.1
    # Vocal tract length perturbation: formants scaled by 1 +- vtlp_spread with probability vtlp_prob, pitch and
    # tempo kept: with speed perturbation, how a few natural-sounding training voices stand for many talkers.
    vtlp_prob: float = 0.0
    vtlp_spread: float = 0.1
    # On top of that, each formant region (around 500, 1500, 2500 Hz) scaled by its own further 1 +- this: talkers
    # differ in how their formants sit relative to each other, not only in vocal tract length (0: one alpha).
    vtlp_band_spread: float = 0.0
    # Dropout on the inputs of the recurrent layers and the lookahead (model.DeepSpeech2), a regulariser against
    # fitting the few natural-sounding training voices' particulars (0: none). Not stored in the checkpoint.
    dropout: float = 0.0
    # SortaGrad (DS2): the first epoch shortest first, a curriculum for a model that starts from nothing. A warm start
    # does not need it, and a run cut short by --time-limit-minutes would then never reach the longer utterances.
    sortagrad: bool = True
    spec_augment: bool = True
    # SpecAugment's mask counts (widths: asr.data.augment.SpecAugment's defaults). Frequency masks hide a band of
    # formant cues at a time, so no single spectral detail of a training voice can carry a character; time masks
    # hide whole stretches of frames whose labels stay, which costs a small model more.
    spec_freq_masks: int = 2
    spec_time_masks: int = 2
    seed: int = 0
    num_workers: int = 1
    device: str = "auto"
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit); for tests and smoke runs
    # Wall-clock budget (0: none), e.g. a lent GPU machine's minutes. The learning rate decays by whichever is further
    # along, steps or time, so a run cut short by the clock still ends at the low rate; the epoch running when time
    # is up ends there and is evaluated and saved as the last. The clock starts with the process: a resumed run gets
    # the whole budget again.
    time_limit_minutes: float = 0.0
    dev_limit: int = 400  # dev utterances decoded each epoch
    # Which dev figure picks best.pt: "wer" for a real dev set (what a listener judges), "cer" for the synthetic sets
    # of the earlier stages, whose WER moved with a few short words.
    select_by: str = "cer"
    # Training utterances spoken faster than this many characters per second are left out (0: none). Some TTS
    # voices at a fast drawn rate reach 30 characters a second: at `small`'s 33 output frames a second that leaves
    # CTC about one frame per character, so those labels are near-infeasible noise, and unlike anyone talking to
    # the demo.
    max_chars_per_second: float = 0.0
    stats_utterances: int = 200  # utterances used for the feature normalisation statistics
    log_every: int = 25
    init_from: str = ""  # warm start from a checkpoint's weights (e.g. the shipped model), fresh optimizer
    # Future frames the row convolution sees (0: the named model's own). Larger than a warm start's, its farther
    # taps start at zero (model.widen_lookahead): the model's latency grows by 30 ms a frame at `small`'s stride.
    lookahead_frames: int = 0
    # Units per recurrent layer (0: the named model's own). Larger than a warm start's, it is widened so that it
    # computes the same function (model.widen_recurrent) and training grows into the new units.
    rnn_hidden: int = 0
    eval_every: int = 1  # epochs between dev evaluations and checkpoints (the last epoch always gets one)
    # Also keep each evaluated epoch's weights as epochNNN.pt (for `python -m asr export --average-with`).
    keep_epoch_checkpoints: bool = False

    def __post_init__(self) -> None:
        # Checked here, before any data loads, so a mistyped augmentation flag is a one-line error, not a traceback
        # from inside the first batch.
        if not 0.0 <= self.vtlp_prob <= 1.0 or not 0.0 <= self.speed_prob <= 1.0:
            raise ValueError("--vtlp-prob and --speed-prob are probabilities: within [0, 1]")
        if not 0.0 <= self.vtlp_band_spread <= MAX_BAND_SPREAD:
            raise ValueError(f"--vtlp-band-spread must be within [0, {MAX_BAND_SPREAD}]: beyond it the warp can fold back")
        if min(self.spec_freq_masks, self.spec_time_masks) < 0:
            raise ValueError("--spec-freq-masks and --spec-time-masks are counts: 0 or more")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("--dropout is a probability: within [0, 1)")
        if self.select_by not in ("wer", "cer"):
            raise ValueError("--select-by is 'wer' or 'cer'")
        if min(self.lookahead_frames, self.rnn_hidden) < 0:
            raise ValueError("--lookahead-frames and --rnn-hidden are sizes: 0 (the named model's own) or more")


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistributedContext:
    """torchrun sets WORLD_SIZE/RANK; a plain `python -m asr train` runs as a world of one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistributedContext()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def feature_statistics(dataset: SpeechDataset, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel mean and std over a sample of clean training utterances; stored in the model for streaming."""
    indices = random.Random(seed).sample(range(len(dataset)), min(count, len(dataset)))
    frames = torch.cat([dataset[i][0] for i in indices])
    return frames.mean(dim=0), frames.std(dim=0).clamp(min=1e-3)


def augment_config(config: TrainConfig) -> AugmentConfig:
    speed = {"speed_prob": config.speed_prob, "speed_range": (1.0 - config.speed_spread, 1.0 + config.speed_spread)}
    return AugmentConfig(**speed).scaled(config.augment_scale)


def learning_rate_at(step: int, config: TrainConfig, total_steps: int, time_fraction: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 5 % of the peak, driven by steps or by the time budget spent, if further."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, max(time_fraction, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)))
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate_greedy(model: DeepSpeech2, dataset: SpeechDataset, device: torch.device, limit: int) -> dict:
    """Greedy WER/CER (jiwer) on up to `limit` utterances."""
    model.eval()
    decoder, references, hypotheses = GreedyDecoder(), [], []
    for index in range(min(limit, len(dataset))):
        features, _ = dataset[index]
        log_probs, _ = model(features[None].to(device), torch.tensor([len(features)], device=device))
        hypotheses.append(decoder.decode(log_probs[0].cpu().numpy()).text)
        references.append(dataset.entries[index].text)
    model.train()
    return {"wer": jiwer.wer(references, hypotheses), "cer": jiwer.cer(references, hypotheses), "example": (references[0], hypotheses[0]) if references else None}


def train(config: TrainConfig) -> Path:
    device = resolve_device(config.device)
    context = setup_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    torch.manual_seed(config.seed)
    out_dir = Path(config.out_dir)
    feature_config = FeatureConfig()

    # Data
    train_entries = read_manifest(config.train_manifest)
    if config.max_chars_per_second > 0:
        kept = [e for e in train_entries if len(e.text) <= config.max_chars_per_second * e.duration]
        if not kept:
            raise SystemExit(f"error: --max-chars-per-second {config.max_chars_per_second:g} leaves no training utterance")
        if context.is_main:
            print(f"--max-chars-per-second {config.max_chars_per_second:g}: left out {len(train_entries) - len(kept)} of "
                  f"{len(train_entries)} training utterances", flush=True)
        train_entries = kept
    dev_entries = read_manifest(config.dev_manifest) if config.dev_manifest else []
    augmenter = WaveformAugmenter(augment_config(config), seed=config.seed + context.rank) if config.augment else None
    # Its own random stream (a seed apart from the waveform augmenter's seed + rank), one per rank.
    warp = VocalTractWarp(config.vtlp_prob, (1.0 - config.vtlp_spread, 1.0 + config.vtlp_spread),
                          seed=config.seed + 7919 * (context.rank + 1), band_spread=config.vtlp_band_spread) \
        if config.augment and config.vtlp_prob > 0 else None
    masks = SpecAugment(freq_masks=config.spec_freq_masks, time_masks=config.spec_time_masks) if config.spec_augment else None
    train_set = SpeechDataset(train_entries, feature_config, augmenter=augmenter, spec_augment=masks, vocal_tract_warp=warp)
    dev_set = SpeechDataset(dev_entries, feature_config)
    sampler = LengthBatchSampler([e.duration for e in train_entries], config.batch_seconds, config.max_batch_size,
                                 sortagrad=config.sortagrad, seed=config.seed, num_replicas=context.world_size, rank=context.rank)
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_batch,
                                         num_workers=config.num_workers, persistent_workers=config.num_workers > 0)

    # Model, optimizer, resume
    model_config = NAMED_CONFIGS[config.model]
    if config.lookahead_frames:
        model_config = replace(model_config, lookahead_frames=config.lookahead_frames)
    if config.rnn_hidden:
        model_config = replace(model_config, rnn_hidden=config.rnn_hidden)
    model = DeepSpeech2(model_config, dropout=config.dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    resume_path = out_dir / "resume.pt"
    start_epoch, step, best_score = 0, 0, float("inf")
    if resume_path.exists():
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_epoch, step, best_score = saved["epoch"], saved["step"], saved["best_score"]
    elif config.init_from:
        # Any checkpoint whose tensors have this model's shapes can seed it: e.g. a model trained at another time
        # stride (strides change no weight shape), which then adapts to the new frame rate.
        warm_model = load_checkpoint(config.init_from).model
        if warm_model.config.lookahead_frames < model_config.lookahead_frames:
            warm_model = widen_lookahead(warm_model, model_config.lookahead_frames)
        if warm_model.config.rnn_hidden < model_config.rnn_hidden:
            try:
                warm_model = widen_recurrent(warm_model, model_config.rnn_hidden)
            except ValueError as error:
                raise SystemExit(f"error: {config.init_from}: {error}") from None
        warm_state = warm_model.state_dict()
        own_shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        if {name: tuple(t.shape) for name, t in warm_state.items()} != own_shapes:
            raise SystemExit(f"error: {config.init_from} has different weight shapes than --model {config.model}")
        model.load_state_dict(warm_state)
    else:
        mean, std = feature_statistics(SpeechDataset(train_entries, feature_config), config.stats_utterances, config.seed)
        model.feature_mean.copy_(mean.to(device))
        model.feature_std.copy_(std.to(device))
    if context.world_size > 1:
        # Every rank starts from rank 0's weights and normalisation statistics.
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)
    trainer = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if context.world_size > 1 else model
    total_steps = config.max_steps or config.epochs * len(sampler)
    ctc_loss = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    metrics_path = out_dir / "metrics.csv"
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"model {config.model}: {count_parameters(model) / 1e6:.2f}M parameters; {len(train_entries)} train utterances "
              f"({sum(e.duration for e in train_entries) / 3600:.2f} h); {len(sampler)} batches/epoch per rank; device {device}; world {context.world_size}")

    started = time.time()
    time_budget_s = config.time_limit_minutes * 60.0
    out_of_time, time_fraction = False, 0.0
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        model.train()
        progress = tqdm(loader, desc=f"epoch {epoch}", disable=not context.is_main, dynamic_ncols=True, mininterval=5)
        audio_seconds, loss_sum, loss_count = 0.0, 0.0, 0
        for batch in progress:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config, total_steps, time_fraction)
            log_probs, output_lengths = trainer(batch.features.to(device), batch.feature_lengths.to(device))
            loss = ctc_loss(log_probs.transpose(0, 1), batch.targets.to(device), output_lengths, batch.target_lengths.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            audio_seconds += float(batch.feature_lengths.sum()) * feature_config.frame_seconds
            loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
            if context.is_main and step % config.log_every == 0:
                progress.set_postfix(loss=f"{loss_sum / loss_count:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if config.max_steps and step >= config.max_steps:
                break
            if time_budget_s:  # checked after a step, so the epoch the clock ends has trained and its loss means something
                time_fraction = _shared_time_fraction(started, time_budget_s, context, device)
                out_of_time = time_fraction >= 1.0
                if out_of_time:
                    break
        last_epoch = epoch + 1 == config.epochs or bool(config.max_steps and step >= config.max_steps) or out_of_time
        if context.is_main and ((epoch + 1) % config.eval_every == 0 or last_epoch):
            scores = evaluate_greedy(model, dev_set, device, config.dev_limit) if len(dev_set) else {"wer": float("nan"), "cer": float("nan"), "example": None}
            elapsed = time.time() - started
            _append_metrics(metrics_path, {"epoch": epoch, "step": step, "train_loss": loss_sum / max(1, loss_count),
                                           "dev_wer": scores["wer"], "dev_cer": scores["cer"], "lr": optimizer.param_groups[0]["lr"],
                                           "audio_seconds": audio_seconds, "wall_seconds": elapsed})
            print(f"epoch {epoch}: loss {loss_sum / max(1, loss_count):.3f} dev WER {scores['wer']:.3f} CER {scores['cer']:.3f} "
                  f"({elapsed / 60:.1f} min) e.g. {scores['example']}", flush=True)
            info = {"train_config": asdict(config), "epochs_done": epoch + 1, "steps": step, "dev_wer": scores["wer"],
                    "dev_cer": scores["cer"], "train_hours": sum(e.duration for e in train_entries) / 3600, "wall_seconds": elapsed}
            save_checkpoint(out_dir / "last.pt", model, feature_config, info)
            if config.keep_epoch_checkpoints:
                save_checkpoint(out_dir / f"epoch{epoch:03d}.pt", model, feature_config, info)
            if not len(dev_set) or scores[config.select_by] <= best_score:  # no dev set: the latest is the best we know
                best_score = scores[config.select_by]
                save_checkpoint(out_dir / "best.pt", model, feature_config, info)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                        "step": step, "best_score": best_score}, resume_path)
        if (config.max_steps and step >= config.max_steps) or out_of_time:
            if context.is_main and out_of_time:
                print(f"time limit of {config.time_limit_minutes:g} min reached after {step} steps (epoch {epoch})", flush=True)
            break
    if context.world_size > 1:
        # DDP keeps replicas identical by construction; print each rank's checksum so a drift is visible.
        # One write with its newline (print's `end` is a second write): the ranks share stdout, and a line split in two
        # lets another rank's output land inside it.
        print(f"rank {context.rank} final weights checksum {state_digest(model.state_dict())[:16]}\n", end="", flush=True)
        dist.barrier()
        dist.destroy_process_group()
    return out_dir / "best.pt"


def _shared_time_fraction(started: float, budget_s: float, context: DistributedContext, device: torch.device) -> float:
    """Share of the time budget spent, by rank 0's clock: under DDP every rank must use the same learning rate (or the
    replicas drift apart) and stop at the same step (or the others wait in all-reduce forever)."""
    fraction = (time.time() - started) / budget_s
    if context.world_size <= 1:
        return fraction
    shared = torch.tensor([fraction], dtype=torch.float64, device=device)
    dist.broadcast(shared, src=0)
    return float(shared.item())


def _append_metrics(path: Path, row: dict) -> None:
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for field in fields(TrainConfig):
        if field.name in ("train_manifest", "dev_manifest", "out_dir"):
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            kind = {"int": int, "float": float}.get(field.type, str)
            parser.add_argument(flag, type=kind, default=field.default)
    parser.add_argument("--train", dest="train_manifest", required=True, help="training manifest (JSON lines)")
    parser.add_argument("--dev", dest="dev_manifest", default="", help="dev manifest for per-epoch WER/CER")
    parser.add_argument("--out", dest="out_dir", default=TrainConfig.out_dir, help="run folder (checkpoints, metrics.csv)")


def run(args: argparse.Namespace) -> int:
    try:
        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best checkpoint: {best}")
    return 0
