"""Deep Speech 2: 2D conv front end, unidirectional recurrent stack, lookahead convolution, CTC head.

Streaming parity is a property of the model here, not of the loop around it:
- convolutions are padded on the left only in time, so an output frame never needs the future;
- feature normalisation uses statistics stored in the weights, never per-utterance ones;
- the lookahead (row) convolution's future frames are held back in the state until they arrive.
`forward` runs whole padded batches; `step` runs one chunk with an explicit `StreamState`, and
`finish` flushes the lookahead at the end of a stream. forward(x) == step(chunks...) + finish().
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from asr.text import LABELS


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80
    conv_channels: tuple[int, ...] = (32, 32, 32)
    conv_time_kernels: tuple[int, ...] = (5, 5, 5)
    conv_freq_kernels: tuple[int, ...] = (21, 11, 11)
    # Time stride 3 overall (33 output frames/s, 30 ms). CTC needs at least one frame per character (two for a
    # doubled letter); our synthetic speech runs at 16.5 characters/s (median, 23 at the 99th percentile), which
    # stride 4 (25 frames/s) squeezed to 0.9 characters a frame. DS2 used stride 2 for characters; 3 keeps the
    # step cost of streaming lower.
    conv_time_strides: tuple[int, ...] = (3, 1, 1)
    conv_freq_strides: tuple[int, ...] = (2, 2, 1)
    rnn_type: str = "gru"  # "gru" or "lstm"
    rnn_hidden: int = 320
    rnn_layers: int = 5
    lookahead_frames: int = 2  # future output frames the row convolution sees: the model's algorithmic latency
    num_labels: int = len(LABELS)
    relu_clip: float = 20.0

    @property
    def time_subsampling(self) -> int:
        factor = 1
        for stride in self.conv_time_strides:
            factor *= stride
        return factor

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
        unknown = set(known) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**known)


NAMED_CONFIGS: dict[str, ModelConfig] = {
    # Trainable on a 2-core CPU, ~3.4M parameters: 6.8 MB on disk in float16.
    "small": ModelConfig(),
    # Paper-like: 3 conv layers with DS2's kernel sizes, 7 recurrent layers.
    "large": ModelConfig(
        conv_channels=(32, 32, 96), conv_time_kernels=(11, 11, 11), conv_freq_kernels=(41, 21, 21),
        conv_time_strides=(2, 2, 1), rnn_hidden=1024, rnn_layers=7, lookahead_frames=4,
    ),
    # For tests: the same structure, small enough to train in seconds.
    "tiny": ModelConfig(conv_channels=(8, 8), conv_time_kernels=(3, 3), conv_freq_kernels=(11, 5),
                        conv_time_strides=(2, 1), conv_freq_strides=(2, 2), rnn_hidden=64, rnn_layers=2, lookahead_frames=2),
}


@dataclass
class StreamState:
    """Everything a stream carries between chunks; a value, so two streams never share it."""

    conv_pending: list[torch.Tensor]  # per conv layer: input frames (B, C, T, F) not yet consumed
    rnn_hidden: list  # per recurrent layer: h (1, B, H), or (h, c) for LSTM
    lookahead_pending: torch.Tensor  # (B, T<=lookahead, H) recurrent outputs waiting for their future
    frames_out: int = 0

    def select(self, index: int) -> "StreamState":
        """The state of one stream of a batch."""
        pick = lambda t: t[index : index + 1]  # noqa: E731
        hidden = [tuple(h[:, index : index + 1] for h in hc) if isinstance(hc, tuple) else hc[:, index : index + 1] for hc in self.rnn_hidden]
        return StreamState([pick(p) for p in self.conv_pending], hidden, pick(self.lookahead_pending), self.frames_out)


def _clipped_relu(x: torch.Tensor, clip: float) -> torch.Tensor:
    return torch.clamp(x, min=0.0, max=clip)


def _mask_time(x: torch.Tensor, lengths: torch.Tensor, time_dim: int) -> torch.Tensor:
    """Zero frames past each sequence's length so padding never leaks into statistics or the lookahead."""
    steps = torch.arange(x.shape[time_dim], device=x.device)
    mask = steps[None, :] < lengths[:, None]
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[time_dim] = x.shape[time_dim]
    return x * mask.view(shape).to(x.dtype)


class ConvBlock(nn.Module):
    """Conv2d over (time, freq), causal in time, then BatchNorm and a clipped ReLU."""

    def __init__(self, in_channels: int, out_channels: int, time_kernel: int, freq_kernel: int, time_stride: int, freq_stride: int, clip: float):
        super().__init__()
        self.time_kernel, self.time_stride, self.clip = time_kernel, time_stride, clip
        self.conv = nn.Conv2d(in_channels, out_channels, (time_kernel, freq_kernel), stride=(time_stride, freq_stride), padding=(0, freq_kernel // 2), bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def output_frames(self, input_frames: int) -> int:
        """Frames out for `input_frames` in, counting the left padding of time_kernel - 1 zeros."""
        return max(0, (input_frames - self.time_kernel) // self.time_stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T, F) already holding its left context; returns every complete output frame."""
        return _clipped_relu(self.norm(self.conv(x)), self.clip)

    def left_padding(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], x.shape[1], self.time_kernel - 1, x.shape[3])


class RecurrentBlock(nn.Module):
    """Sequence-wise BatchNorm (skipped on the first layer, as in DS2) then a unidirectional GRU/LSTM."""

    def __init__(self, input_size: int, hidden: int, rnn_type: str, normalize_input: bool):
        super().__init__()
        self.norm = nn.BatchNorm1d(input_size) if normalize_input else None
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn_type]
        self.rnn = rnn_class(input_size, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, hidden=None):
        if self.norm is not None:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.rnn(x, hidden)


class Lookahead(nn.Module):
    """DS2's row convolution: out[t] = sum_j w_j * h[t + j], j = 0..lookahead, per channel."""

    def __init__(self, channels: int, lookahead_frames: int, clip: float):
        super().__init__()
        self.lookahead_frames, self.clip = lookahead_frames, clip
        # A depthwise Conv1d holds the weights (checkpoint key lookahead.conv.weight); forward does its arithmetic.
        self.conv = nn.Conv1d(channels, channels, lookahead_frames + 1, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T + lookahead, H) -> (B, T, H)."""
        # The same sum as self.conv(x), written as a weighted sum over sliding windows: for the few frames of a
        # streaming step, a depthwise Conv1d call costs ~10x more (0.14 vs 0.014 ms) than the arithmetic.
        windows = x.unfold(1, self.lookahead_frames + 1, 1)  # (B, T, H, lookahead + 1)
        return _clipped_relu((windows * self.conv.weight[:, 0, :]).sum(dim=-1), self.clip)


class DeepSpeech2(nn.Module):
    batchnorms_folded = False  # True on the inference copies fold_batchnorms makes

    def __init__(self, config: ModelConfig = ModelConfig(), dropout: float = 0.0):
        """`dropout`: a training setting, not part of the model (checkpoints do not keep it; `step` never applies
        it): the probability of zeroing each input of every recurrent layer and of the lookahead in `forward` while
        training. Only the connections between layers, never the recurrent ones (Zaremba et al., 2014), so a unit
        cannot lean on one feature a few training voices happen to share."""
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be within [0, 1), got {dropout}")
        self.config, self.dropout = config, dropout
        # Fixed normalisation statistics (set from training data), so a chunk is normalised like the whole.
        self.register_buffer("feature_mean", torch.zeros(config.n_mels))
        self.register_buffer("feature_std", torch.ones(config.n_mels))
        self.convs = nn.ModuleList()
        channels, freq = 1, config.n_mels
        for out_ch, kt, kf, st, sf in zip(config.conv_channels, config.conv_time_kernels, config.conv_freq_kernels, config.conv_time_strides, config.conv_freq_strides):
            self.convs.append(ConvBlock(channels, out_ch, kt, kf, st, sf, config.relu_clip))
            channels, freq = out_ch, (freq + 2 * (kf // 2) - kf) // sf + 1
        rnn_input = channels * freq
        self.rnns = nn.ModuleList(
            RecurrentBlock(rnn_input if i == 0 else config.rnn_hidden, config.rnn_hidden, config.rnn_type, normalize_input=i > 0)
            for i in range(config.rnn_layers)
        )
        self.lookahead = Lookahead(config.rnn_hidden, config.lookahead_frames, config.relu_clip)
        self.head_norm = nn.BatchNorm1d(config.rnn_hidden)
        self.head = nn.Linear(config.rnn_hidden, config.num_labels)

    def train(self, mode: bool = True) -> "DeepSpeech2":
        if mode and self.batchnorms_folded:
            raise RuntimeError("a model with folded BatchNorms is for inference only; train the original")
        return super().train(mode)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            lengths = torch.div(lengths - 1, conv.time_stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, n_mels), lengths (B,) -> log_probs (B, T', labels), output lengths (B,)."""
        x = self._normalize(features).unsqueeze(1)
        frame_lengths = lengths
        for conv in self.convs:
            x = conv(torch.cat([conv.left_padding(x), x], dim=2))
            frame_lengths = torch.div(frame_lengths - 1, conv.time_stride, rounding_mode="floor") + 1
            x = _mask_time(x, frame_lengths, time_dim=2)
        x = self._flatten(x)
        for rnn in self.rnns:
            x, _ = rnn(nn.functional.dropout(x, self.dropout, self.training))
        x = nn.functional.dropout(x, self.dropout, self.training)
        x = _mask_time(x, frame_lengths, time_dim=1)  # the end of an utterance looks ahead into zeros, as in streaming
        x = torch.cat([x, x.new_zeros(x.shape[0], self.config.lookahead_frames, x.shape[2])], dim=1)
        return self._head(self.lookahead(x)), frame_lengths

    def initial_state(self, batch_size: int = 1, device: torch.device | str = "cpu") -> StreamState:
        conv_pending, channels, freq = [], 1, self.config.n_mels
        for conv in self.convs:
            conv_pending.append(torch.zeros(batch_size, channels, conv.time_kernel - 1, freq, device=device))
            channels, freq = conv.conv.out_channels, (freq + 2 * conv.conv.padding[1] - conv.conv.kernel_size[1]) // conv.conv.stride[1] + 1
        hidden = []
        for _ in self.rnns:
            h = torch.zeros(1, batch_size, self.config.rnn_hidden, device=device)
            hidden.append((h, h.clone()) if self.config.rnn_type == "lstm" else h)
        lookahead = torch.zeros(batch_size, 0, self.config.rnn_hidden, device=device)
        return StreamState(conv_pending, hidden, lookahead)

    @torch.no_grad()
    def step(self, features: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """One chunk: features (B, T, n_mels) -> (log_probs (B, T_out, labels), new state). The input state is not modified."""
        x = self._normalize(features).unsqueeze(1)
        conv_pending = []
        for conv, pending in zip(self.convs, state.conv_pending):
            x = torch.cat([pending, x], dim=2)
            count = conv.output_frames(x.shape[2])
            conv_pending.append(x[:, :, count * conv.time_stride :])
            x = conv(x[:, :, : (count - 1) * conv.time_stride + conv.time_kernel]) if count else x.new_zeros(x.shape[0], conv.conv.out_channels, 0, self._conv_freq(conv, x.shape[3]))
        x = self._flatten(x)
        if x.shape[1] == 0:  # not enough frames yet for one output frame
            empty = x.new_zeros(x.shape[0], 0, self.config.num_labels)
            return empty, replace(state, conv_pending=conv_pending)
        hidden = []
        for rnn, h in zip(self.rnns, state.rnn_hidden):
            x, h = rnn(x, h)
            hidden.append(h)
        return self._emit_lookahead(x, replace(state, conv_pending=conv_pending, rnn_hidden=hidden))

    @torch.no_grad()
    def finish(self, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """End of stream: the held-back frames look ahead into zeros, exactly as `forward` pads."""
        pad = state.lookahead_pending.new_zeros(state.lookahead_pending.shape[0], self.config.lookahead_frames, self.config.rnn_hidden)
        pending = state.lookahead_pending
        x = torch.cat([pending, pad], dim=1)
        out = self._head(self.lookahead(x)) if pending.shape[1] else x.new_zeros(x.shape[0], 0, self.config.num_labels)
        return out, replace(state, lookahead_pending=pending[:, :0], frames_out=state.frames_out + pending.shape[1])

    def _emit_lookahead(self, rnn_out: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        x = torch.cat([state.lookahead_pending, rnn_out], dim=1)
        ready = max(0, x.shape[1] - self.config.lookahead_frames)
        out = self._head(self.lookahead(x)) if ready else x.new_zeros(x.shape[0], 0, self.config.num_labels)
        return out, replace(state, lookahead_pending=x[:, ready:], frames_out=state.frames_out + ready)

    def _normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    @staticmethod
    def _conv_freq(conv: ConvBlock, freq: int) -> int:
        return (freq + 2 * conv.conv.padding[1] - conv.conv.kernel_size[1]) // conv.conv.stride[1] + 1

    @staticmethod
    def _flatten(x: torch.Tensor) -> torch.Tensor:
        batch, channels, time, freq = x.shape
        return x.permute(0, 2, 1, 3).reshape(batch, time, channels * freq)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_norm(x.transpose(1, 2)).transpose(1, 2)
        return torch.log_softmax(self.head(x), dim=-1)


def fold_batchnorms(model: DeepSpeech2) -> DeepSpeech2:
    """An inference copy with every BatchNorm folded into the layer next to it: the same outputs to float rounding
    (tested to 1e-4 on log-probs), fewer operations per streaming step (1.17-1.19x faster end to end at 160 ms
    chunks, bench/RESULTS.md). Eval-mode BatchNorm is a fixed per-channel affine map y = a*x + b,
    so the conv before it takes a per-output-channel scale and a bias, and the GRU/LSTM input projection and the
    CTC head after it take a per-input-column scale and a bias. The copy is for inference only (its weights have
    other names and shapes), so it refuses train() and checkpoints are saved from the original."""
    if model.batchnorms_folded:
        return model
    folded = copy.deepcopy(model).eval()
    for block in folded.convs:
        scale, shift = _affine_of(block.norm)
        conv = block.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                          bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.data = conv.weight.data * scale[:, None, None, None]
        fused.bias.data = shift.clone()
        # Channels-last weights select oneDNN's NHWC kernels; on a 160 ms chunk the two 32-channel layers took
        # 0.36 and 0.34 ms instead of 0.72 and 0.58 (the first layer, one input channel, is about the same).
        block.conv, block.norm = fused.to(memory_format=torch.channels_last), nn.Identity()
    for block in folded.rnns:
        if block.norm is not None:
            scale, shift = _affine_of(block.norm)
            weight, bias = block.rnn.weight_ih_l0, block.rnn.bias_ih_l0
            bias.data = bias.data + weight.data @ shift
            weight.data = weight.data * scale[None, :]
            block.norm = None
    scale, shift = _affine_of(folded.head_norm)
    folded.head.bias.data = folded.head.bias.data + folded.head.weight.data @ shift
    folded.head.weight.data = folded.head.weight.data * scale[None, :]
    folded.head_norm = nn.Identity()
    for block in folded.rnns:
        block.rnn.flatten_parameters()  # the in-place edits must reach cuDNN's packed copy on a GPU
    folded.batchnorms_folded = True
    return folded


def widen_lookahead(model: DeepSpeech2, lookahead_frames: int) -> DeepSpeech2:
    """A copy whose row convolution sees `lookahead_frames` future frames, the new (farther) taps zero: the same
    log-probs frame for frame, each emitted that much later. A warm start from it keeps all the training behind
    the weights it came from, and training learns what the farther future is worth."""
    have = model.config.lookahead_frames
    if lookahead_frames < have:
        raise ValueError(f"a lookahead of {have} frames cannot shrink to {lookahead_frames} without changing the model")
    if lookahead_frames == have:
        return model
    if model.batchnorms_folded:
        raise ValueError("widen the original model, not its folded inference copy")
    weight = model.lookahead.conv.weight
    wider = DeepSpeech2(replace(model.config, lookahead_frames=lookahead_frames)).to(weight.device, weight.dtype)
    state = dict(model.state_dict())
    state["lookahead.conv.weight"] = torch.cat([weight.detach(), weight.new_zeros(*weight.shape[:2], lookahead_frames - have)], dim=2)
    wider.load_state_dict(state)
    return wider.train(model.training)


def widen_recurrent(model: DeepSpeech2, hidden: int, seed: int = 0) -> DeepSpeech2:
    """A copy with `hidden` units in every recurrent layer that computes the same log-probs (Net2WiderNet,
    Chen et al. 2016), so a warm start keeps all the training behind the narrower weights.

    Each new unit copies an old one's incoming weights (every gate, recurrent and input side), so the two stay
    equal; whatever read the old unit (its own layer's recurrence, the next layer's input, the head) now reads both,
    with the old outgoing weight split between them in random proportions. The sum is unchanged, so the function
    is too, and the unequal split gives the twins different gradients, so training pulls them apart. The split is
    drawn from a fixed seed: widening one file twice gives the same weights (`average_checkpoints` relies on it to
    average a widened run with the file it started from)."""
    have = model.config.rnn_hidden
    if hidden < have:
        raise ValueError(f"{have} recurrent units cannot shrink to {hidden} without changing the model")
    if hidden == have:
        return model
    if hidden > 2 * have:
        raise ValueError(f"widening {have} units to {hidden} would copy some more than once; widen in steps")
    if model.batchnorms_folded:
        raise ValueError("widen the original model, not its folded inference copy")
    generator = torch.Generator().manual_seed(seed)
    copied = torch.arange(hidden - have)  # the old units that get a twin
    source = torch.cat([torch.arange(have), copied])  # new unit -> the old unit it copies
    state = dict(model.state_dict())  # every entry widened below is a new tensor; load_state_dict copies the rest

    def share(old_columns: torch.Tensor) -> torch.Tensor:
        """(rows, have) outgoing weights -> (rows, hidden): a copied unit and its twin split each weight."""
        fraction = (0.3 + 0.4 * torch.rand(old_columns.shape[0], hidden - have, generator=generator)).to(old_columns)
        kept, given = old_columns.clone(), old_columns[:, copied] * (1 - fraction)
        kept[:, copied] = old_columns[:, copied] * fraction
        return torch.cat([kept, given], dim=1)

    def rows(tensor: torch.Tensor) -> torch.Tensor:
        """Gate-stacked rows (gates * have, ...) -> (gates * hidden, ...), each gate's block widened alike."""
        return torch.cat([block[source] for block in tensor.split(have)], dim=0)

    for index in range(len(model.rnns)):
        prefix = f"rnns.{index}."
        if index > 0:  # the BatchNorm on this layer's input normalises the previous layer's units
            for name in ("weight", "bias", "running_mean", "running_var"):
                state[prefix + "norm." + name] = state[prefix + "norm." + name][source]
            state[prefix + "rnn.weight_ih_l0"] = share(state[prefix + "rnn.weight_ih_l0"])
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            state[prefix + "rnn." + name] = rows(state[prefix + "rnn." + name])
        state[prefix + "rnn.weight_hh_l0"] = share(rows(state[prefix + "rnn.weight_hh_l0"]))
    state["lookahead.conv.weight"] = state["lookahead.conv.weight"][source]  # per channel: the twin copies it
    for name in ("weight", "bias", "running_mean", "running_var"):
        state["head_norm." + name] = state["head_norm." + name][source]
    state["head.weight"] = share(state["head.weight"])
    reference = model.head.weight
    wider = DeepSpeech2(replace(model.config, rnn_hidden=hidden)).to(reference.device, reference.dtype)
    wider.load_state_dict(state)
    return wider.train(model.training)


def _affine_of(norm: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = scale * x + shift, per channel."""
    scale = norm.weight.data / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias.data - norm.running_mean * scale


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
