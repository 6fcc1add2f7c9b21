"""wav2vec2 parity with transformers 5.23: base (group norm, post-LN), XLSR-large (stable, conv bias)."""

from __future__ import annotations

import pytest
import torch
from _engine_helpers import (
    W2V2_BASE,
    XLSR_LARGE,
    XLSR_TOKENIZER_CONFIG,
    XLSR_VOCAB,
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
from sewcli.model.wav2vec2 import Wav2Vec2Config

transformers = pytest.importorskip("transformers")

TOL = 1e-4
LENGTHS = {"odd": 16001, "short": 9999, "12s": 192000}


@pytest.fixture(scope="module")
def base2(tmp_path_factory):
    """wav2vec2-base-960h config cut to 2 layers."""
    hf = hf_model("wav2vec2", W2V2_BASE, seed=11, num_hidden_layers=2)
    st_dir, bin_dir = save_both(hf, tmp_path_factory.mktemp("base2"))
    return hf, load_model(st_dir), load_model(bin_dir), st_dir


@pytest.fixture(scope="module")
def xlsr2(tmp_path_factory):
    """XLSR-53 fine-tune config cut to 2 layers, with a [PAD]-at-the-end vocabulary (pad_token_id 33)."""
    hf = hf_model("wav2vec2", XLSR_LARGE, seed=12, num_hidden_layers=2, pad_token_id=33)
    meta = {"vocab": XLSR_VOCAB, "tokenizer_config": XLSR_TOKENIZER_CONFIG}
    st_dir, bin_dir = save_both(hf, tmp_path_factory.mktemp("xlsr2"), **meta)
    return hf, load_model(st_dir), load_model(bin_dir), st_dir


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa if "masked_spec_embed" not in k
    )


@pytest.mark.parametrize("flavour", ["base2", "xlsr2"])
def test_both_formats_load_identical_weights(flavour, request):
    _, st, legacy, _ = request.getfixturevalue(flavour)
    assert _same_weights(st.model, legacy.model)
    assert st.family == "wav2vec2" and not st.model.training


@pytest.mark.parametrize("gemm", [False, True], ids=["reference-kernels", "cpu-kernels"])
@pytest.mark.parametrize("case", sorted(LENGTHS))
@pytest.mark.parametrize("flavour", ["base2", "xlsr2"])
def test_logits_match_transformers(flavour, case, gemm, request):
    hf, ours, _, _ = request.getfixturevalue(flavour)
    x = waveform(LENGTHS[case], seed=len(case))
    model = with_cpu_kernels(ours.model) if gemm else ours.model  # GEMM convs, fused q/k/v
    with torch.no_grad():
        ref = hf(x).logits
        got = model(x)
    assert got.shape == ref.shape
    diff = max_diff_valid(ref, got)
    print(f"wav2vec2 {flavour} {case}, cpu kernels {gemm}: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_stable_padded_batch_with_mask_matches_transformers_and_unbatched(xlsr2):
    hf, ours, _, _ = xlsr2
    rows = [waveform(n, seed=n) for n in (24000, 17001, 9999)]
    x = torch.zeros(3, 24000)
    mask = torch.zeros(3, 24000, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : r.shape[1]] = r[0]
        mask[i, : r.shape[1]] = 1
    with torch.no_grad():
        ref = hf(x, attention_mask=mask).logits
        got = ours.model(x, mask)
        single = [ours.model(r) for r in rows]
    frames = ours.model.output_lengths(mask.sum(-1)).tolist()
    assert max_diff_valid(ref, got, frames) <= TOL
    diff = max(float((got[i, :n] - single[i][0]).abs().max()) for i, n in enumerate(frames))
    print(f"xlsr padded batch vs unbatched: max abs diff {diff:.3g}")
    assert diff <= TOL


@pytest.mark.parametrize("flavour", ["base2", "xlsr2"])
def test_equal_length_batch_equals_one_at_a_time(flavour, request):
    _, ours, _, _ = request.getfixturevalue(flavour)
    x = torch.cat([waveform(12000, s) for s in range(3)])
    with torch.no_grad():
        batched = ours.model(x)
        single = torch.cat([ours.model(x[i : i + 1]) for i in range(3)])
    diff = float((batched - single).abs().max())
    same = torch.equal(batched, single)
    print(f"wav2vec2 {flavour} batch vs single: equal={same} max abs diff {diff:.3g}")
    assert diff <= 1e-5


def test_xlsr_vocabulary_matches_transformers_tokenizer(xlsr2):
    _, ours, _, st_dir = xlsr2
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(st_dir)
    vocab = ours.info.vocabulary
    assert len(vocab) == 36 == ours.model.lm_head.out_features
    assert list(vocab.tokens) == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert vocab.blank_id == tok.pad_token_id == 33
    assert vocab.tokens.index(vocab.word_delimiter) == tok.word_delimiter_token_id


@pytest.mark.parametrize("flavour", ["base2", "xlsr2"])
def test_greedy_text_equals_transformers_batch_decode(flavour, request):
    decoding = pytest.importorskip("sewcli.decoding")
    hf, ours, _, st_dir = request.getfixturevalue(flavour)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(st_dir)
    x = waveform(40000, seed=9)
    with torch.no_grad():
        ref_ids = hf(x).logits.argmax(-1)
        logits = ours.model(x)
    assert len(set(ref_ids[0].tolist())) > 2
    lp = torch.log_softmax(logits, -1)[0].numpy()
    got = decoding.build_decoder(ours.info.vocabulary).decode([records.Emissions(lp, 0, 0.02)]).text
    assert got == tok.batch_decode(ref_ids)[0]


def test_full_depth_base(tmp_path):
    hf = hf_model("wav2vec2", W2V2_BASE, seed=13)  # 12 layers, 94 M parameters
    st_dir, _ = save_both(hf, tmp_path, legacy=False)
    ours = load_model(st_dir).model
    x = waveform(16001, seed=4)
    with torch.no_grad():
        diff = max_diff_valid(hf(x).logits, ours(x))
    print(f"wav2vec2-base full depth: max abs diff {diff:.3g}")
    assert diff <= TOL


def test_minimum_input_and_lengths(base2):
    hf, ours, _, _ = base2
    lengths = torch.tensor([400, 401, 719, 720, 16000, 16001])
    assert torch.equal(ours.model.output_lengths(lengths), hf._get_feat_extract_output_lengths(lengths))
    assert ours.model.min_input_samples == 400
    with torch.no_grad():
        assert ours.model(torch.randn(1, 400)).shape == (1, 1, 32)


def test_adapters_are_refused():
    with pytest.raises(UnsupportedConfigError, match="adapter_attn_dim"):
        Wav2Vec2Config.from_hf({**XLSR_LARGE, "adapter_attn_dim": 16})
