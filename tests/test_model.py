import pytest
import torch
from hypothesis import given, settings, strategies as st

from tests.conftest import random_eval_model
from asr.model import NAMED_CONFIGS, DeepSpeech2, ModelConfig, fold_batchnorms, widen_lookahead, widen_recurrent




MODELS = {name: random_eval_model(NAMED_CONFIGS[name]) for name in ("small", "large", "tiny")}
MODELS["lstm"] = random_eval_model(ModelConfig(rnn_type="lstm", rnn_hidden=64, rnn_layers=2, lookahead_frames=3))


def streamed_log_probs(model: DeepSpeech2, features: torch.Tensor, chunk_sizes: list[int]) -> torch.Tensor:
    state, outputs, start = model.initial_state(), [], 0
    for size in chunk_sizes:
        log_probs, state = model.step(features[:, start : start + size], state)
        outputs.append(log_probs)
        start += size
    log_probs, state = model.finish(state)
    outputs.append(log_probs)
    return torch.cat(outputs, dim=1)


def chunks_from(sizes: list[int], total: int) -> list[int]:
    result, used = [], 0
    for size in sizes:
        if used >= total:
            break
        result.append(min(size, total - used))
        used += result[-1]
    if used < total:
        result.append(total - used)
    return result


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["small", "large", "lstm"]), frames=st.integers(1, 160), sizes=st.lists(st.integers(1, 45), min_size=1, max_size=40))
def test_streaming_equals_offline_for_random_chunkings(name, frames, sizes):
    model = MODELS[name]
    features = torch.randn(1, frames, model.config.n_mels)
    with torch.no_grad():
        offline, lengths = model(features, torch.tensor([frames]))
    streamed = streamed_log_probs(model, features, chunks_from(sizes, frames))
    assert streamed.shape == offline.shape
    assert int(lengths[0]) == offline.shape[1]
    torch.testing.assert_close(streamed, offline, atol=1e-4, rtol=0)


@pytest.mark.parametrize("chunk", [1, 3, 16, 50])
def test_one_frame_and_fixed_chunks(chunk):
    model = MODELS["small"]
    features = torch.randn(1, 131, model.config.n_mels)
    with torch.no_grad():
        offline, _ = model(features, torch.tensor([131]))
    streamed = streamed_log_probs(model, features, chunks_from([chunk] * 200, 131))
    torch.testing.assert_close(streamed, offline, atol=1e-4, rtol=0)


def test_padded_batch_matches_single_utterances():
    """Padding in a batch must not leak into shorter utterances (masking before the lookahead)."""
    model = MODELS["small"]
    lengths = [97, 40, 13]
    batch = torch.randn(3, 97, model.config.n_mels)
    with torch.no_grad():
        batched, out_lengths = model(batch, torch.tensor(lengths))
        for row, length in enumerate(lengths):
            single, _ = model(batch[row : row + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(batched[row : row + 1, : int(out_lengths[row])], single, atol=1e-4, rtol=0)


def test_a_widened_lookahead_gives_the_same_log_probs_later_and_still_streams_like_offline():
    model = MODELS["small"]
    wider = widen_lookahead(model, 6)
    assert wider.config.lookahead_frames == 6 and not wider.training
    features = torch.randn(1, 131, model.config.n_mels)
    with torch.no_grad():
        offline, _ = model(features, torch.tensor([131]))
        widened, _ = wider(features, torch.tensor([131]))
        _, state = wider.step(features[:, :60], wider.initial_state())
    torch.testing.assert_close(widened, offline, atol=1e-5, rtol=0)
    assert state.frames_out == 20 - 6  # 60 input frames are 20 output frames, 6 of them still wait for their future
    torch.testing.assert_close(streamed_log_probs(wider, features, [7, 50, 74]), offline, atol=1e-4, rtol=0)
    assert widen_lookahead(wider, 6) is wider
    with pytest.raises(ValueError, match="cannot shrink"):
        widen_lookahead(wider, 2)


@pytest.mark.parametrize("name", ["small", "lstm"])
def test_widened_recurrent_layers_give_the_same_log_probs_and_still_stream_like_offline(name):
    model = MODELS[name]
    hidden = model.config.rnn_hidden * 6 // 5
    wider = widen_recurrent(model, hidden)
    assert wider.config.rnn_hidden == hidden and not wider.training
    features = torch.randn(2, 131, model.config.n_mels)
    with torch.no_grad():
        offline, _ = model(features, torch.tensor([131, 90]))
        widened, _ = wider(features, torch.tensor([131, 90]))
    torch.testing.assert_close(widened, offline, atol=1e-4, rtol=0)
    torch.testing.assert_close(streamed_log_probs(wider, features[:1], [7, 50, 74]), offline[:1], atol=1e-4, rtol=0)
    again = widen_recurrent(model, hidden)  # a fixed seed: `average_checkpoints` re-widens a run's start file
    assert all(torch.equal(a, b) for a, b in zip(wider.state_dict().values(), again.state_dict().values()))
    assert widen_recurrent(wider, hidden) is wider


def test_a_widened_units_twin_gets_a_different_gradient_so_training_can_pull_them_apart():
    model = MODELS["small"]
    have = model.config.rnn_hidden
    wider = widen_recurrent(model, have + 8)
    weight = wider.rnns[2].rnn.weight_ih_l0
    torch.testing.assert_close(weight[have : have + 8], weight[:8])  # the twins start equal...
    log_probs, _ = wider(torch.randn(1, 60, model.config.n_mels), torch.tensor([60]))
    log_probs[..., 1:].sum().backward()
    assert not torch.allclose(weight.grad[have : have + 8], weight.grad[:8])  # ...and are pushed apart


def test_widen_recurrent_refuses_what_it_cannot_do_exactly():
    model = MODELS["tiny"]
    with pytest.raises(ValueError, match="cannot shrink"):
        widen_recurrent(model, model.config.rnn_hidden - 1)
    with pytest.raises(ValueError, match="more than once"):
        widen_recurrent(model, 2 * model.config.rnn_hidden + 1)
    with pytest.raises(ValueError, match="folded"):
        widen_recurrent(fold_batchnorms(model), model.config.rnn_hidden + 1)


def test_dropout_acts_only_while_training_and_never_on_a_stream():
    trained = DeepSpeech2(NAMED_CONFIGS["tiny"], dropout=0.3)
    features, lengths = torch.randn(2, 60, trained.config.n_mels), torch.tensor([60, 45])
    trained.train()
    first, _ = trained(features, lengths)
    second, _ = trained(features, lengths)
    assert not torch.allclose(first, second)  # a fresh mask each call
    trained.load_state_dict(MODELS["tiny"].state_dict())  # (training mode moved the BatchNorm statistics)
    trained.eval()  # eval: the same function as the model without dropout, offline and streamed
    expected, _ = MODELS["tiny"](features, lengths)
    torch.testing.assert_close(trained(features, lengths)[0], expected)
    streamed = streamed_log_probs(trained, features[:1], [7, 13, 40])
    torch.testing.assert_close(streamed, expected[:1, : streamed.shape[1]], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="dropout"):
        DeepSpeech2(NAMED_CONFIGS["tiny"], dropout=1.0)


def test_step_does_not_modify_the_state_it_was_given():
    model = MODELS["tiny"]
    state = model.initial_state()
    _, state = model.step(torch.randn(1, 20, model.config.n_mels), state)
    snapshot = [t.clone() for t in state.conv_pending] + [state.rnn_hidden[0].clone()]
    model.step(torch.randn(1, 20, model.config.n_mels), state)
    for before, after in zip(snapshot, state.conv_pending + [state.rnn_hidden[0]]):
        assert torch.equal(before, after)


def test_named_configs_have_the_promised_shape():
    assert len(NAMED_CONFIGS["large"].conv_channels) == 3 and NAMED_CONFIGS["large"].rnn_layers == 7
    assert len(NAMED_CONFIGS["small"].conv_channels) == 3
    small_params = sum(p.numel() for p in MODELS["small"].parameters())
    assert small_params * 2 < 10 * 1024 * 1024, "small must fit under 10 MB in float16"
    # 30 ms output frames: room for CTC's one frame per character at our fastest speaking rates
    assert MODELS["small"].config.time_subsampling == 3


def test_config_round_trip():
    config = NAMED_CONFIGS["large"]
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"bogus": 1})


def test_lookahead_is_the_row_convolution_of_its_weights():
    lookahead = MODELS["small"].lookahead
    x = torch.randn(2, 9, lookahead.conv.in_channels)
    with torch.no_grad():
        expected = torch.clamp(lookahead.conv(x.transpose(1, 2)).transpose(1, 2), 0.0, lookahead.clip)
        assert torch.allclose(lookahead(x), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["small", "lstm"])
def test_folded_batchnorms_give_the_same_outputs_offline_and_streaming(name):
    model = random_eval_model(MODELS[name].config, seed=3)
    for norm in model.modules():  # learned affine parts too, not only running statistics
        if isinstance(norm, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.uniform_(-0.3, 0.3)
    original_state = {key: value.clone() for key, value in model.state_dict().items()}
    folded = fold_batchnorms(model)
    assert folded.batchnorms_folded and not model.batchnorms_folded
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in folded.modules())
    features = torch.randn(2, 97, model.config.n_mels)
    lengths = torch.tensor([97, 60])
    with torch.no_grad():
        expected, expected_lengths = model(features, lengths)
        got, got_lengths = folded(features, lengths)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert torch.equal(got_lengths, expected_lengths)
    streamed = streamed_log_probs(folded, features[:1], chunks_from([7, 16, 1, 30], 97))
    torch.testing.assert_close(streamed, expected[:1], atol=1e-4, rtol=0)
    assert all(torch.equal(value, original_state[key]) for key, value in model.state_dict().items())  # original untouched


def test_folded_model_is_inference_only_and_folding_is_idempotent():
    folded = fold_batchnorms(MODELS["tiny"])
    assert fold_batchnorms(folded) is folded
    assert folded.eval() is folded
    with pytest.raises(RuntimeError, match="inference only"):
        folded.train()


def test_a_folded_model_is_not_saved_as_a_checkpoint(tmp_path):
    from asr.checkpoint import save_checkpoint
    from asr.features import FeatureConfig

    with pytest.raises(ValueError, match="folded"):
        save_checkpoint(tmp_path / "x.pt", fold_batchnorms(MODELS["tiny"]), FeatureConfig())
    assert not (tmp_path / "x.pt").exists()
