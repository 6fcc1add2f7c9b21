"""SEW engine: parity with transformers 5.23 (random weights, real sew-tiny config), batching, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from _engine_helpers import (
    SEW_TINY,
    hf_model,
    max_diff_valid,
    one_thread,  # noqa: F401 (autouse fixture: one intra-op thread)
    save_both,
    waveform,
    with_cpu_kernels,
)

from sewcli import records
from sewcli.errors import UnsupportedConfigError
from sewcli.model.load import load_model
from sewcli.model.sew import SEWConfig, SEWForCTC

transformers = pytest.importorskip("transformers")

TOL = 1e-4
# odd number of samples (and of CNN frames: 49), shorter than 1 s (30 frames), 12 s (599 frames)
LENGTHS = {"odd": 16001, "short": 9999, "12s": 192000}


@pytest.fixture(scope="module")
def sew2(tmp_path_factory):
    """sew-tiny config cut to 2 layers: the transformers model and our loads of both checkpoint formats."""
    hf = hf_model("sew", SEW_TINY, seed=1, num_hidden_layers=2)
    st_dir, bin_dir = save_both(hf, tmp_path_factory.mktemp("sew2"))
    return hf, load_model(st_dir), load_model(bin_dir), st_dir


def test_both_formats_load_identical_weights(sew2):
    _, st, legacy, _ = sew2
    a, b = st.model.state_dict(), legacy.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("masked_spec_embed"))
    assert not st.model.training and st.family == "sew"


@pytest.mark.parametrize("gemm", [False, True], ids=["reference-kernels", "cpu-kernels"])
@pytest.mark.parametrize("case", sorted(LENGTHS))
def test_logits_match_transformers(sew2, case, gemm):
    hf, ours, _, _ = sew2
    x = waveform(LENGTHS[case], seed=len(case))
    model = with_cpu_kernels(ours.model) if gemm else ours.model  # GEMM convs, fused q/k/v
    with torch.no_grad():
        ref = hf(x).logits
        got = model(x)
    assert got.shape == ref.shape
    diff = max_diff_valid(ref, got)
    print(f"sew-tiny(2 layers) {case}, cpu kernels {gemm}: max abs diff {diff:.3g}")
    assert diff <= TOL
    if LENGTHS[case] == 16001:  # odd CNN frame count: the last frame is the zero-padded one (spec P6)
        assert torch.allclose(got[0, -1], ours.model.lm_head.bias)


def test_output_lengths_and_minimum_match_transformers(sew2):
    hf, ours, _, _ = sew2
    lengths = torch.tensor([720, 721, 1039, 1040, 16000, 16001, 192000])
    assert torch.equal(ours.model.output_lengths(lengths), hf._get_feat_extract_output_lengths(lengths))
    assert ours.model.min_input_samples == 720 and ours.model.inputs_to_logits_ratio == 320
    with torch.no_grad():
        assert ours.model(torch.randn(1, 720)).shape == (1, 2, 32)
        with pytest.raises(ValueError, match="720"):
            ours.model(torch.randn(1, 719))


def test_padded_batch_with_mask_matches_transformers(sew2):
    hf, ours, _, _ = sew2
    x = torch.cat([waveform(24000, 3), waveform(24000, 4)])
    mask = torch.ones_like(x, dtype=torch.long)
    mask[1, 15013:] = 0  # odd valid frame count: exercises the ceil pooling of transformers 5.x
    x[1, 15013:] = 0.0
    with torch.no_grad():
        ref = hf(x, attention_mask=mask).logits
        got = ours.model(x, mask)
    frames = ours.model.output_lengths(mask.sum(-1)).tolist()
    assert max_diff_valid(ref, got, frames) <= TOL


def test_equal_length_batch_equals_one_at_a_time(sew2):
    _, ours, _, _ = sew2
    x = torch.cat([waveform(20000, s) for s in range(3)])
    with torch.no_grad():
        batched = ours.model(x)
        single = torch.cat([ours.model(x[i : i + 1]) for i in range(3)])
    diff = float((batched - single).abs().max())
    print(f"sew batch vs single: torch.equal={torch.equal(batched, single)} max abs diff {diff:.3g}")
    assert diff <= 1e-5


def test_greedy_text_equals_transformers_batch_decode(sew2):
    decoding = pytest.importorskip("sewcli.decoding")
    hf, ours, _, st_dir = sew2
    processor = transformers.Wav2Vec2Processor.from_pretrained(st_dir)
    x = waveform(48000, seed=7)
    with torch.no_grad():
        ref_ids = hf(x).logits.argmax(-1)
        logits = ours.model(x)
    expected = processor.batch_decode(ref_ids)[0]
    log_probs = torch.log_softmax(logits, -1)[0].numpy()
    emissions = records.Emissions(log_probs=log_probs, first_frame=0, frame_seconds=0.02)
    got = decoding.build_decoder(ours.info.vocabulary).decode([emissions]).text
    assert len(set(ref_ids[0].tolist())) > 2  # the random model emits a varied sequence, not one token
    assert got == expected


def test_full_depth_sew_tiny(tmp_path):
    hf = hf_model("sew", SEW_TINY, seed=2)  # 12 layers
    st_dir, _ = save_both(hf, tmp_path, legacy=False)
    ours = load_model(st_dir).model
    x = waveform(32321, seed=5)
    with torch.no_grad():
        diff = max_diff_valid(hf(x).logits, ours(x))
    print(f"sew-tiny full depth: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_feature_projection_config(tmp_path):
    # hidden != conv_dim[-1]: a bare `sew.feature_projection` Linear exists (spec 3.3)
    hf = hf_model(
        "sew",
        SEW_TINY,
        seed=3,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=512,
        num_hidden_layers=2,
    )
    assert hasattr(hf.sew, "feature_projection")
    st_dir, bin_dir = save_both(hf, tmp_path)
    x = waveform(20800, seed=6)
    with torch.no_grad():
        ref = hf(x).logits
        for d in (st_dir, bin_dir):
            assert max_diff_valid(ref, load_model(d).model(x)) <= TOL


def test_config_round_trip_through_transformers():
    cfg = SEWConfig.from_hf(SEW_TINY)
    assert cfg.hidden_size == 512 and cfg.conv_dim[-1] == 512 and cfg.num_conv_pos_embeddings == 31
    hf_cfg = transformers.SEWConfig(**{k: v for k, v in cfg.to_hf().items() if k != "architectures"})
    for f in dataclasses.fields(cfg):
        ours, theirs = getattr(cfg, f.name), getattr(hf_cfg, f.name)
        assert (tuple(theirs) if isinstance(theirs, list) else theirs) == ours, f.name
    assert SEWConfig.from_hf(cfg.to_hf()) == cfg
    assert cfg.to_hf()["architectures"] == ["SEWForCTC"] and cfg.to_hf()["model_type"] == "sew"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hidden_act", "swiglu"),
        ("feat_extract_norm", "batch"),
        ("model_type", "hubert"),
        ("num_attention_heads", 7),
    ],
)
def test_unsupported_config_names_key(key, value):
    with pytest.raises(UnsupportedConfigError, match=key):
        SEWConfig.from_hf({**SEW_TINY, key: value})


def _tiny_train_config(**kw) -> SEWConfig:
    base = {
        "vocab_size": 8,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (16, 16, 32),
        "conv_kernel": (10, 8, 4),
        "conv_stride": (5, 4, 2),
        "num_conv_pos_embeddings": 15,
        "num_conv_pos_embedding_groups": 4,
        "layerdrop": 0.0,
        "mask_time_prob": 0.3,
        "mask_time_length": 2,
        "mask_feature_prob": 0.1,
        "mask_feature_length": 4,
    }
    base.update(kw)
    return SEWConfig(**base)


def test_training_step_gives_finite_grads_for_every_parameter():
    torch.manual_seed(0)
    model = SEWForCTC(_tiny_train_config()).train()
    x = torch.randn(3, 4000)
    lengths = torch.tensor([4000, 3500, 3000])
    mask = (torch.arange(4000)[None] < lengths[:, None]).long()
    targets = torch.randint(1, 8, (3, 5))
    log_probs = torch.log_softmax(model(x, mask), -1)  # (B, frames, vocab)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1), targets, model.output_lengths(lengths), torch.tensor([5, 4, 3]), blank=0
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.sew.masked_spec_embed.grad.abs().sum() > 0  # time masking ran


def test_dropout_and_masking_only_in_train_mode():
    torch.manual_seed(0)
    model = SEWForCTC(_tiny_train_config(hidden_dropout=0.2, layerdrop=0.5))
    x = torch.randn(2, 4000)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
