"""SEW-D engine: config translation, relative positions, and logits identical to transformers' SEWDForCTC.

The reference is transformers 5.23 (test-only dependency): it builds random-weight models from the real
asapp/sew-d-tiny-100k-ft-ls100h config (sew_spec.md section 6) and an old-style config (gelu, eps 1e-5), saves
them with `save_pretrained` (safetensors) and as a `pytorch_model.bin` with legacy `weight_g`/`weight_v`
names, and we load both. Weights are re-randomised with a larger spread than transformers' init so that
attention is peaked and the relative-position terms, LayerNorm eps and masks visibly matter (a test that
cannot fail is a defect).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _engine_helpers import save_both, with_cpu_kernels

from sewcli.errors import UnsupportedConfigError
from sewcli.model.load import load_model
from sewcli.model.sew_d import SEWDConfig, SEWDForCTC, build_relative_position, make_log_bucket_position

transformers = pytest.importorskip("transformers")
from transformers.models.sew_d import modeling_sew_d as hf_sew_d  # noqa: E402

TOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Run this module with one intra-op thread."""
    # On the shared, oversubscribed CI box, 2-thread OpenMP barriers made these tests ~4x slower overall
    # (174 s -> 46 s for this file; one small forward 1.4 s -> 0.3 s).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# asapp/sew-d-tiny-100k-ft-ls100h config.json (sew_spec.md section 6; current hub revision)
HUB_TINY: dict[str, Any] = {
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["SEWDForCTC"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512],
    "conv_kernel": [10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1],
    "conv_stride": [5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1],
    "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.0,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "final_dropout": 0.0,
    "hidden_act": "gelu_python",
    "hidden_dropout": 0.0,
    "hidden_size": 384,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-07,
    "max_position_embeddings": 512,
    "model_type": "sew-d",
    "norm_rel_ebd": "layer_norm",
    "num_attention_heads": 6,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 31,
    "num_feat_extract_layers": 13,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "pos_att_type": ["p2c", "c2p"],
    "position_biased_input": False,
    "position_buckets": 256,
    "relative_attention": True,
    "share_att_key": True,
    "squeeze_factor": 2,
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
    "torch_dtype": "float32",
    "transformers_version": "4.12.0.dev0",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
    "feature_layer_norm_eps": 1e-05,
}
# The repo as first uploaded (and community copies made before the fix): gelu, 1e-5, no feature eps key.
HUB_TINY_OLD = {k: v for k, v in HUB_TINY.items() if k != "feature_layer_norm_eps"} | {
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-05,
}


def _hf_model(cfg: dict[str, Any], seed: int, **overrides: Any) -> Any:
    """A random-weight transformers SEWDForCTC in eval mode, weights spread so every term matters."""
    torch.manual_seed(seed)
    model = hf_sew_d.SEWDForCTC(transformers.SEWDConfig(**(cfg | overrides))).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.2)  # weights 1 +- 0.2, biases +- 0.2
            elif name.endswith("rel_embeddings.weight"):
                p.normal_(0.0, 3e-3)  # variance ~1e-5: the rel-embedding LayerNorm's eps (1e-7 vs 1e-5) shows
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif p.dim() == 2:  # Linear (out, in): std 1/sqrt(in) keeps activations O(1), attention peaked
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
    return model


def _save_st(model: Any, root: Path) -> Path:
    """save_pretrained (safetensors, `parametrizations.weight.original0/1` names) + tokenizer files."""
    st_dir, _ = save_both(model, root, legacy=False)
    return st_dir


def _save_both(model: Any, root: Path) -> tuple[Path, Path]:
    """save_pretrained (safetensors) and a legacy pytorch_model.bin with weight_g/weight_v names."""
    st_dir, bin_dir = save_both(model, root)
    assert (st_dir / "model.safetensors").exists()
    assert any(k.endswith("weight_g") for k in torch.load(bin_dir / "pytorch_model.bin", weights_only=True))
    return st_dir, bin_dir


def _load(directory: Path) -> SEWDForCTC:
    """Load a checkpoint directory through the project's loader (family dispatch, weight-norm folding)."""
    loaded = load_model(directory)
    assert loaded.family == "sew-d" and isinstance(loaded.model, SEWDForCTC) and not loaded.model.training
    assert len(loaded.info.vocabulary) == loaded.model.config.vocab_size
    return loaded.model


def _signal(n: int, seed: int, batch: int = 1) -> torch.Tensor:
    """Speech-like test input: noise with a slow envelope (float32, unit-ish variance)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, generator=g)
    env = 0.5 + torch.sin(torch.linspace(0, 20, n))[None].abs()
    return (x * env).float()


def _max_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float((ours - ref).abs().max())


# ------------------------------------------------------------------------------------------------------------
# Config translation


def test_defaults_equal_transformers_defaults() -> None:
    """A key missing from config.json must mean what it means to transformers."""
    ref = transformers.SEWDConfig()
    ours = SEWDConfig.from_hf({})
    for key, value in ours.to_hf().items():
        if key in ("architectures", "norm_rel_ebd"):
            continue
        # modeling_sew_d reads max_relative_positions with getattr(config, ..., -1); the rest are fields
        expected = getattr(ref, key) if key != "max_relative_positions" else getattr(ref, key, -1)
        assert value == (list(expected) if isinstance(expected, tuple) else expected), key
    assert ours.norm_rel_ebd == ("layer_norm",) and ref.norm_rel_ebd == "layer_norm"
    assert SEWDConfig.from_hf(ref.to_dict()) == ours


def test_hub_config_translation_and_round_trip() -> None:
    cfg = SEWDConfig.from_hf(HUB_TINY)
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.head_size) == (
        384,
        6,
        1536,
        64,
    )
    assert (cfg.layer_norm_eps, cfg.feature_layer_norm_eps, cfg.hidden_act) == (1e-7, 1e-5, "gelu_python")
    assert (cfg.position_buckets, cfg.max_position, cfg.att_span, cfg.num_conv_pos_embeddings) == (
        256,
        512,
        256,
        31,
    )
    assert cfg.pos_att_type == ("p2c", "c2p") and cfg.share_att_key
    assert cfg.inputs_to_logits_ratio == 320
    old = SEWDConfig.from_hf(HUB_TINY_OLD)
    assert (old.layer_norm_eps, old.feature_layer_norm_eps, old.hidden_act) == (1e-5, 1e-5, "gelu")
    assert SEWDConfig.from_hf(cfg.to_hf()) == cfg
    hf = transformers.SEWDConfig(**cfg.to_hf())  # transformers accepts what we write, with the same meaning
    assert SEWDConfig.from_hf(hf.to_dict()) == cfg
    assert SEWDConfig.from_hf({"pos_att_type": "c2p|p2c"}).pos_att_type == ("c2p", "p2c")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("relative_attention", False),
        ("pos_att_type", ["p2c", "p2p"]),
        ("norm_rel_ebd", "batch_norm"),
        ("conv_kernel_size", 3),
        ("hidden_act", "mish"),
        ("hidden_size", "wide"),
        ("num_attention_heads", 7),
        ("attention_head_size", 32),
        ("add_adapter", True),
        ("model_type", "sew"),
        ("conv_stride", 5),
    ],
)
def test_unsupported_config_names_key(key: str, value: Any) -> None:
    with pytest.raises(UnsupportedConfigError) as err:
        SEWDConfig.from_hf(HUB_TINY | {key: value})
    msg = str(err.value)
    assert key in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------------------
# Relative positions


def test_log_buckets_spec_values_and_transformers() -> None:
    r = torch.tensor([0, 1, -1, 127, 128, -128, 200, 511, 512, 1000, -1000])
    got = make_log_bucket_position(r, 256, 512).long().tolist()
    assert got == [0, 1, -1, 127, 128, -128, 169, 255, 256, 317, -317]  # sew_spec.md section 4.3
    r = torch.arange(-20000, 20001)
    ref = hf_sew_d.make_log_bucket_position(r, 256, 512).long()
    assert torch.equal(make_log_bucket_position(r, 256, 512).long(), ref)
    ref2 = hf_sew_d.build_relative_position(700, 700, bucket_size=256, max_position=512)[0]
    assert torch.equal(build_relative_position(700, 256, 512, torch.device("cpu")), ref2)


# ------------------------------------------------------------------------------------------------------------
# Parity with transformers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real sew-d-tiny config cut to 2 layers: HF model, ours loaded from safetensors and from legacy .bin."""
    hf = _hf_model(HUB_TINY, seed=0, num_hidden_layers=2)
    st_dir, bin_dir = _save_both(hf, tmp_path_factory.mktemp("sewd_tiny"))
    return {"hf": hf, "st": _load(st_dir), "bin": _load(bin_dir)}


def _hf_logits(model: Any, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.inference_mode():
        return model(x, attention_mask=mask).logits


def _our_logits(model: SEWDForCTC, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.inference_mode():
        return model(x, mask)


@pytest.mark.parametrize(
    ("samples", "seed"),
    [
        (
            16_001,
            1,
        ),  # 1 s + 1 sample: 49 CNN frames, odd -> the last frame is the zero pad (logits = lm_head.bias)
        (9_999, 2),  # < 1 s
        (192_000, 3),  # 12 s: 299 squeezed frames, distances beyond 128 use the log buckets
    ],
)
@pytest.mark.parametrize("gemm", [False, True], ids=["reference-kernels", "cpu-kernels"])
def test_logits_match_transformers(tiny: dict[str, Any], samples: int, seed: int, gemm: bool) -> None:
    x = _signal(samples, seed)
    ref = _hf_logits(tiny["hf"], x)
    model = with_cpu_kernels(tiny["st"]) if gemm else tiny["st"]  # GEMM convs (SEW-D attention is its own)
    ours = _our_logits(model, x)
    assert ours.shape[1] == int(tiny["st"].output_lengths(torch.tensor([samples]))[0])
    diff = _max_diff(ours, ref)
    print(f"sew-d tiny 2L, {samples} samples: max|diff| = {diff:.3g}")
    assert diff <= TOL
    assert float(ref.abs().max()) > 1.0  # logits are not trivially small


def test_legacy_bin_loads_same_weights(tiny: dict[str, Any]) -> None:
    st, legacy = tiny["st"].state_dict(), tiny["bin"].state_dict()
    assert st.keys() == legacy.keys()
    differ = [k for k in st if not torch.equal(st[k], legacy[k])]
    assert differ in ([], ["sew_d.masked_spec_embed"])  # training-only, skipped by the loader (spec P14)
    x = _signal(16_001, 4)
    assert _max_diff(_our_logits(tiny["bin"], x), _hf_logits(tiny["hf"], x)) <= TOL


def test_odd_length_last_frame_is_bias(tiny: dict[str, Any]) -> None:
    logits = _our_logits(tiny["st"], _signal(16_001, 1))
    assert logits.shape[1] % 2 == 1
    assert torch.equal(logits[0, -1], tiny["st"].lm_head.bias.detach())


def test_padded_batch_with_mask_matches_transformers(tiny: dict[str, Any]) -> None:
    """Right-padded batch + attention_mask (5.23 semantics: ceil-pooled key mask) on valid frames."""
    lengths = [24_000, 17_123, 9_000]
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros_like(x, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = _signal(n, 10 + i)[0]
        mask[i, :n] = 1
    ref = _hf_logits(tiny["hf"], x, mask)
    ours = _our_logits(tiny["st"], x, mask)
    frames = tiny["st"].output_lengths(torch.tensor(lengths))
    for i, f in enumerate(frames.tolist()):
        diff = _max_diff(ours[i, :f], ref[i, :f])
        print(f"padded row {i} ({lengths[i]} samples): max|diff| = {diff:.3g}")
        assert diff <= TOL
    # the mask matters: the shortest row differs from running it padded without a mask
    nomask = _our_logits(tiny["st"], x)
    assert _max_diff(nomask[2, : frames[2]], ours[2, : frames[2]]) > 1e-3


def test_batch_of_equal_lengths_equals_one_at_a_time(tiny: dict[str, Any]) -> None:
    x = _signal(20_000, 5, batch=3)
    model = tiny["st"]
    batched = _our_logits(model, x)
    single = torch.cat([_our_logits(model, x[i : i + 1]) for i in range(3)])
    diff = _max_diff(batched, single)
    print(
        f"batch of 3 vs one at a time: max|diff| = {diff:.3g}, torch.equal = {torch.equal(batched, single)}"
    )
    assert diff <= 1e-5
    ones = torch.ones_like(x, dtype=torch.long)  # an all-valid mask is the same as no mask, here and in HF
    assert torch.equal(_our_logits(model, x, ones), batched)
    assert _max_diff(_hf_logits(tiny["hf"], x, ones), batched) <= TOL


def test_old_style_config_matches_transformers(tmp_path: Path) -> None:
    """Pre-2022 hub copies: hidden_act gelu, layer_norm_eps 1e-5, no feature_layer_norm_eps."""
    hf = _hf_model(HUB_TINY_OLD, seed=7, num_hidden_layers=2)
    ours = _load(_save_st(hf, tmp_path))
    assert ours.config.layer_norm_eps == 1e-5 and ours.config.hidden_act == "gelu"
    x = _signal(12_345, 8)
    diff = _max_diff(_our_logits(ours, x), _hf_logits(hf, x))
    print(f"old-style config: max|diff| = {diff:.3g}")
    assert diff <= TOL


def test_full_depth_matches_transformers(tmp_path: Path) -> None:
    hf = _hf_model(HUB_TINY, seed=9)
    ours = _load(_save_st(hf, tmp_path))
    assert len(ours.sew_d.encoder.encoder.layer) == 12
    n_hf = sum(p.numel() for p in hf.parameters())
    assert n_hf == 24_127_423  # the HF API's count for asapp/sew-d-tiny-100k-ft-ls100h (sew_spec.md 10.3)
    # ours folds the weight norm: the (1, 1, 31) magnitude g is not a separate parameter
    assert sum(p.numel() for p in ours.parameters()) == n_hf - 31
    x = _signal(40_000, 10)
    diff = _max_diff(_our_logits(ours, x), _hf_logits(hf, x))
    print(f"full depth 12 layers, 40000 samples: max|diff| = {diff:.3g}")
    assert diff <= TOL


def test_eps_and_activation_follow_config() -> None:
    """gelu vs gelu_python differ by ~1.4e-6 (below the logit tolerance), so check the choice structurally."""
    from sewcli.model.common import GeluPython

    for cfg, act in ((HUB_TINY, GeluPython), (HUB_TINY_OLD, torch.nn.GELU)):
        model = SEWDForCTC(SEWDConfig.from_hf(cfg | {"num_hidden_layers": 1}))
        deberta = model.sew_d.encoder.encoder
        lns = [deberta.LayerNorm] + [m for m in deberta.layer.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert len(lns) == 3 and all(ln.eps == cfg["layer_norm_eps"] for ln in lns)
        assert (
            model.sew_d.layer_norm.eps == 1e-5
        )  # feature_layer_norm_eps (absent in old configs: default 1e-5)
        assert type(deberta.layer[0].intermediate.intermediate_act_fn) is act


# Small geometry for the variant checks (fast: 3 conv layers, hidden 64).
SMALL: dict[str, Any] = {
    "conv_dim": [32, 32, 48],
    "conv_kernel": [10, 3, 2],
    "conv_stride": [5, 2, 2],
    "hidden_size": 64,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_conv_pos_embeddings": 16,  # even kernel: SamePad drops a frame
    "num_conv_pos_embedding_groups": 4,
    "position_buckets": 16,
    "max_position_embeddings": 64,
    "vocab_size": 32,
}


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"share_att_key": False},
        {"pos_att_type": ["c2p"]},
        {"pos_att_type": ["p2c"], "share_att_key": False},
        {"pos_att_type": []},
        {"norm_rel_ebd": "none"},
        {"position_buckets": -1, "max_position_embeddings": 24},  # plain clamped distances, no log buckets
        {"max_relative_positions": 40},
        {"feat_extract_norm": "layer", "conv_bias": True, "squeeze_factor": 3},
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v) or "base",
)
def test_variants_match_transformers(tmp_path: Path, variant: dict[str, Any]) -> None:
    hf = _hf_model(SMALL | variant, seed=11)
    ours = _load(_save_st(hf, tmp_path))
    lengths = [16_000, 11_111]  # 1 s: 100 squeezed frames at hop 20 -> well past 16 buckets / 24 positions
    x = torch.zeros(2, 16_000)
    mask = torch.zeros(2, 16_000, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = _signal(n, 20 + i)[0]
        mask[i, :n] = 1
    for m in (None, mask):
        ref, got = _hf_logits(hf, x, m), _our_logits(ours, x, m)
        frames = ours.output_lengths(torch.tensor(lengths)) if m is not None else [ref.shape[1]] * 2
        for i, f in enumerate(frames):
            assert _max_diff(got[i, :f], ref[i, :f]) <= TOL


# ------------------------------------------------------------------------------------------------------------
# Eval-mode cache of the relative-position projections, training


def _small_model(seed: int = 0, **overrides: Any) -> SEWDForCTC:
    torch.manual_seed(seed)
    return SEWDForCTC(SEWDConfig.from_hf(SMALL | overrides))


def test_position_cache_is_reused_and_invalidated() -> None:
    model = _small_model().eval()
    deberta = model.sew_d.encoder.encoder
    x = _signal(8_000, 30)
    with torch.enable_grad():
        uncached = model(x).detach()  # autograd on: projections recomputed, nothing cached
    assert deberta._cache_key is None
    with torch.inference_mode():
        first = model(x)
        cached = deberta._cache
        second = model(x)
    assert deberta._cache is cached  # reused, not recomputed
    assert torch.equal(first, second) and torch.equal(first, uncached)

    # an in-place weight change (what load_state_dict does) invalidates the cache
    with torch.no_grad():
        deberta.layer[0].attention.self.key_proj.bias.add_(0.5)
        changed = model(x)
        assert deberta._cache is not cached
        model.train().eval()
        assert deberta._cache_key is None
    with torch.enable_grad():
        assert torch.equal(changed, model(x).detach())
    assert not torch.equal(changed, first)

    # .to() drops the cache
    with torch.inference_mode():
        model(x)
    assert deberta._cache_key is not None
    model.to(torch.float64).to(torch.float32)
    assert deberta._cache_key is None

    # load_state_dict of the original weights brings the original logits back
    fresh = _small_model()
    model.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        assert torch.equal(model(x), first)


def test_training_step_gives_finite_gradients_everywhere() -> None:
    model = _small_model(
        seed=1, mask_time_prob=0.3, mask_time_length=2, activation_dropout=0.1, attention_dropout=0.1
    )
    model.train()
    x = _signal(12_000, 31, batch=2)
    mask = torch.ones_like(x, dtype=torch.long)
    mask[1, 9_000:] = 0
    logits = model(x, mask)
    log_probs = logits.log_softmax(-1).transpose(0, 1)  # (T, B, V) for ctc_loss
    targets = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    loss = torch.nn.functional.ctc_loss(
        log_probs,
        targets,
        model.output_lengths(mask.sum(-1)),
        torch.tensor([4, 3]),
        blank=0,
        zero_infinity=False,
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "sew_d.masked_spec_embed":  # gets gradient only where a time span was masked
            assert p.grad.abs().sum() > 0, name
    # dropout is active in training mode and off in eval mode
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_too_short_input_is_refused() -> None:
    model = _small_model().eval()
    n = model.min_input_samples
    assert model.output_lengths(torch.tensor([n]))[0] == model.config.squeeze_factor
    with torch.inference_mode():
        assert model(torch.zeros(1, n)).shape[1] == model.config.squeeze_factor
        with pytest.raises(ValueError, match=str(n)):
            model(torch.zeros(1, n - 1))


def test_model_built_under_inference_mode_is_not_cached_stale() -> None:
    """Inference tensors have no version counter: no caching, and in-place weight changes still show."""
    x = _signal(8_000, 32)
    with torch.inference_mode():
        model = _small_model().eval()
        deberta = model.sew_d.encoder.encoder
        before = model(x)
        assert deberta._cache_key is None
        deberta.layer[1].attention.self.query_proj.bias.add_(0.5)
        after = model(x)
    assert not torch.equal(before, after)
    reference = _small_model().eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(reference(x), after)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_close_to_float32(dtype: torch.dtype) -> None:
    model = _small_model(seed=3).eval()
    x = _signal(16_000, 33)
    with torch.inference_mode():
        ref = model(x)
        half = _small_model(seed=3).eval()
        half.load_state_dict(model.state_dict())
        out = half.to(dtype)(x.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert _max_diff(out.float(), ref) < 0.05 * float(ref.abs().max())


def test_int8_fast_path_after_a_cached_forward() -> None:
    """`--precision int8` deep-copies and quantises the linears: the copy must not reuse the fp32 cache."""
    from sewcli.model.fastpath import quantize_linear_int8

    model = _small_model(seed=4).eval()
    x = _signal(16_000, 34)
    with torch.inference_mode():
        ref = model(x)  # fills the fp32 position cache
    quantized = quantize_linear_int8(model)
    deberta = quantized.sew_d.encoder.encoder
    with torch.inference_mode():
        out = quantized(x)
        fresh = [t for pair in deberta.position_projections() for t in pair if t is not None]
    deberta.clear_cache()
    with torch.inference_mode():
        recomputed = [t for pair in deberta.position_projections() for t in pair if t is not None]
        assert torch.equal(quantized(x), out)
    assert all(torch.equal(a, b) for a, b in zip(fresh, recomputed, strict=True))
    assert 0 < _max_diff(out, ref) < 0.05 * float(ref.abs().max())


# ------------------------------------------------------------------------------------------------------------
# The real checkpoint (opt-in: needs the network or a filled HF cache)


@pytest.mark.hub
@pytest.mark.skipif(
    os.environ.get("SEW_HUB_TESTS") != "1", reason="set SEW_HUB_TESTS=1 to download checkpoints"
)
def test_real_sew_d_tiny_matches_transformers() -> None:
    """asapp/sew-d-tiny-100k-ft-ls100h (2021 pytorch_model.bin, weight_g/weight_v) through our loader."""
    from huggingface_hub import snapshot_download

    directory = Path(
        snapshot_download("asapp/sew-d-tiny-100k-ft-ls100h", allow_patterns=["*.json", "pytorch_model.bin"])
    )
    ours = _load(directory)
    ref = hf_sew_d.SEWDForCTC.from_pretrained(directory).eval()
    assert sum(p.numel() for p in ref.parameters()) == 24_127_423
    assert ours.config.layer_norm_eps == ref.config.layer_norm_eps
    x = _signal(3 * 16_000 + 123, 40)
    x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)  # as Wav2Vec2FeatureExtractor normalises
    diff = _max_diff(_our_logits(ours, x), _hf_logits(ref, x))
    print(f"real sew-d-tiny: max|diff| = {diff:.3g}")
    assert diff <= TOL


def test_inference_stage_runs_a_sew_d_checkpoint(tiny: dict[str, Any], tmp_path: Path) -> None:
    """sewcli.inference loads the family and its log-probs equal log_softmax of transformers' logits."""
    from sewcli.inference import InferenceOptions, load, window_log_probs
    from sewcli.records import Window

    st_dir, _ = _save_both(tiny["hf"], tmp_path)
    model = load(st_dir, InferenceOptions(device="cpu", threads=1))
    assert isinstance(model.module, SEWDForCTC)
    assert (model.hop_samples, model.min_samples, model.sample_rate) == (320, 720, 16_000)
    samples = _signal(20_000, 50)[0].numpy()
    windows = [Window(i, 0, samples, 0, 62, True) for i in range(2)]
    got = window_log_probs(model, windows)
    x = torch.from_numpy(samples)[None]
    x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)  # the feature extractor's normalisation
    ref = torch.log_softmax(_hf_logits(tiny["hf"], x)[0], -1)
    assert len(got) == 2 and got[0].shape == (62, 32)
    assert _max_diff(torch.from_numpy(got[1]), ref) <= TOL
