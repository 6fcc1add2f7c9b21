"""The pure-Python ARPA reader (sewcli.lm), the recipe's Kneser-Ney builder, and the LM in beam search."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pyctcdecode.language_model  # noqa: F401  # imported before any test hides kenlm from it
import pytest

from sewcli import errors
from sewcli.decoding import DecodeOptions, build_decoder, bundled_lm, with_bundled_lm
from sewcli.lm import ArpaModel, LMParams, ngram_language_model

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_DIR = REPO / "sewcli" / "assets" / "sew-synth-en"

# A hand-made bigram model: the numbers are chosen so that each lookup path gives a distinct sum.
ARPA = """\
Some text before the data section is allowed.

\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.5\t<unk>\t0
-99\t<s>\t-0.25
-1.0\t</s>
-0.7\tTHE\t-0.5
-1.2\tCAT\t-0.125
-2.0\tSAT

\\2-grams:
-0.3\t<s> THE
-0.4\tTHE CAT
-0.6\tCAT SAT
-0.05\tSAT </s>

\\end\\
"""


def ids(m: ArpaModel, *words: str) -> tuple[int, ...]:
    return tuple(m._ids[w] for w in words)


@pytest.fixture
def arpa(tmp_path: Path) -> Path:
    p = tmp_path / "lm.arpa"
    p.write_text(ARPA, encoding="utf-8")
    return p


def test_scores_follow_the_back_off_rules(arpa):
    m = ArpaModel(arpa)
    assert m.order == 2 and m.unigrams == {"THE", "CAT", "SAT"}
    s = m.start(sentence=True)
    assert m.score(s, "THE") == (pytest.approx(-0.3), ids(m, "THE"))  # listed bigram
    assert m.score(ids(m, "THE"), "CAT")[0] == pytest.approx(-0.4)
    assert m.score(ids(m, "THE"), "SAT")[0] == pytest.approx(-0.5 + -2.0)  # back-off(THE) + p(SAT)
    assert m.score(ids(m, "SAT"), "THE")[0] == pytest.approx(0.0 + -0.7)  # SAT has no back-off: 0
    assert m.score(s, "CAT")[0] == pytest.approx(-0.25 + -1.2)
    assert m.score(ids(m, "CAT"), "DOG") == (pytest.approx(-0.125 + -1.5), ids(m, "<unk>"))  # as KenLM: <unk>
    assert m.score((), "CAT")[0] == pytest.approx(-1.2)
    assert m.start(sentence=False) == ()


def test_gzip_and_hashed_keys_give_the_same_scores(arpa, tmp_path, monkeypatch):
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    plain, zipped = ArpaModel(arpa), ArpaModel(gz)
    monkeypatch.setenv("SEW_CACHE_DIR", "")  # parse again, not read the cache entry of `plain`
    monkeypatch.setattr(ArpaModel, "_choose_keys", lambda self, declared: setattr(self, "_bits", 0))
    hashed = ArpaModel(arpa)
    assert plain._bits > 0 and hashed._bits == 0
    for state in [(), plain.start(True), ids(plain, "THE"), ids(plain, "CAT"), ids(plain, "SAT")]:
        for w in ["THE", "CAT", "SAT", "</s>", "DOG"]:
            assert plain.score(state, w) == zipped.score(state, w) == hashed.score(state, w)


def test_the_state_keeps_order_minus_one_words(tmp_path):
    p = tmp_path / "tri.arpa"
    p.write_text(
        "\\data\\\nngram 1=4\nngram 2=1\nngram 3=1\n\n"
        "\\1-grams:\n-1\t<unk>\n-99\t<s>\t0\n-1\t</s>\n-0.5\tA\t-0.1\n\n"
        "\\2-grams:\n-0.2\tA A\t-0.3\n\n\\3-grams:\n-0.01\tA A A\n\n\\end\\\n",
        encoding="utf-8",
    )
    m = ArpaModel(p)
    a = m._ids["A"]
    state = m.start(True)
    for _ in range(3):
        _, state = m.score(state, "A")
    assert state == (a, a)
    assert m.score((a, a), "A")[0] == pytest.approx(-0.01)
    assert m.score((a, a), "</s>")[0] == pytest.approx(-0.3 + -0.1 + -1)  # bo(A A) + bo(A) + p(</s>)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some words\n", "not an ARPA file"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\n", "line 5: expected a log-probability and 1 word"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\nx\tA\n", "line 5: log-probability is not a number"),
        ("\\data\\\nngram 1=1\n\n\\2-grams:\n-1\tA B\n", "section 2-grams is not declared"),
        ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\tA\n\n\\2-grams:\n-1\tA B\n", "word missing"),
    ],
)
def test_bad_arpa_files_name_the_file_and_line(tmp_path, text, message):
    p = tmp_path / "bad.arpa"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(errors.DecoderError, match=message) as e:
        ArpaModel(p)
    assert "bad.arpa" in str(e.value)


def test_unreadable_lm_files_are_decoder_errors(tmp_path):
    with pytest.raises(errors.DecoderError, match="nope.arpa: no such file"):
        ArpaModel(tmp_path / "nope.arpa")
    broken = tmp_path / "broken.arpa.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(errors.DecoderError, match="broken.arpa.gz: cannot read it"):
        ArpaModel(broken)
    latin = tmp_path / "latin.arpa"
    latin.write_bytes("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\tCAF\xc9\n".encode("latin-1"))
    with pytest.raises(errors.DecoderError, match="latin.arpa: cannot read it"):
        ArpaModel(latin)


def cache_entries(root: Path) -> list[Path]:
    return sorted((root / "lm").glob("*.npz")) if (root / "lm").is_dir() else []


def test_parsed_models_are_cached_and_read_back_identically(arpa, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SEW_CACHE_DIR", str(root))
    parsed = ArpaModel(arpa)
    [entry] = cache_entries(root)
    monkeypatch.setattr(ArpaModel, "_parse", lambda self, lines: pytest.fail("parsed instead of cached"))
    cached = ArpaModel(arpa)
    assert cached._ids == parsed._ids and (cached.order, cached._bits) == (parsed.order, parsed._bits)
    for a, b in zip(
        cached._keys + cached._logp + cached._logbo, parsed._keys + parsed._logp + parsed._logbo, strict=True
    ):
        assert a.dtype == b.dtype and (a == b).all()
    for state in [(), parsed.start(True), ids(parsed, "THE"), ids(parsed, "CAT")]:
        for w in ["THE", "CAT", "SAT", "</s>", "DOG"]:
            assert cached.score(state, w) == parsed.score(state, w)
    assert cached.unigrams == parsed.unigrams
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary file left


def test_an_edited_lm_file_is_parsed_again(arpa, tmp_path, monkeypatch):
    monkeypatch.setenv("SEW_CACHE_DIR", str(tmp_path / "cache"))
    assert ArpaModel(arpa).score((), "SAT")[0] == pytest.approx(-2.0)
    arpa.write_text(ARPA.replace("-2.0\tSAT", "-2.5\tSAT"), encoding="utf-8")  # same size, new mtime
    assert ArpaModel(arpa).score((), "SAT")[0] == pytest.approx(-2.5)
    [entry] = cache_entries(tmp_path / "cache")  # the entry of the old text is gone
    other = tmp_path / "other.arpa"
    other.write_text(ARPA, encoding="utf-8")
    ArpaModel(other)  # another file's entry does not replace this one's
    assert entry in cache_entries(tmp_path / "cache") and len(cache_entries(tmp_path / "cache")) == 2
    monkeypatch.setattr(ArpaModel, "_parse", lambda self, lines: pytest.fail("parsed instead of cached"))
    assert ArpaModel(arpa).score((), "SAT")[0] == pytest.approx(-2.5)


def test_a_damaged_cache_entry_is_replaced_not_an_error(arpa, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SEW_CACHE_DIR", str(root))
    ArpaModel(arpa)
    [entry] = cache_entries(root)
    entry.write_bytes(entry.read_bytes()[:100])
    assert ArpaModel(arpa).score((), "CAT")[0] == pytest.approx(-1.2)
    assert ArpaModel(arpa).score((), "CAT")[0] == pytest.approx(-1.2)  # from the rewritten entry
    assert entry.stat().st_size > 100


def test_an_interrupted_cache_write_leaves_no_temporary_file(arpa, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SEW_CACHE_DIR", str(root))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sewcli.lm.np.savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ArpaModel(arpa)
    assert list((root / "lm").iterdir()) == []


def test_cache_off_or_unwritable_still_reads_the_model(arpa, tmp_path, monkeypatch):
    monkeypatch.setenv("SEW_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ArpaModel(arpa).order == 2
    assert not (tmp_path / "xdg").exists()
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("SEW_CACHE_DIR", str(blocker / "cache"))  # mkdir fails: ENOTDIR
    assert ArpaModel(arpa).order == 2


def load_recipe_lm():
    spec = importlib.util.spec_from_file_location("recipe_lm", REPO / "recipes" / "synth-en" / "lm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SENTENCES = [
    "THE CAT SAT ON THE MAT",
    "THE DOG SAT ON THE LOG",
    "A CAT AND A DOG",
    "THE CAT ATE",
    "ON THE MAT THE CAT SAT",
    "THE DOG ATE THE CAT'S FOOD",
    "A MAT",
]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_recipe_kneser_ney_is_a_normalised_model(tmp_path, order):
    """Each context's distribution over the vocabulary (with </s> and <unk>) sums to one, read as ARPA."""
    lm = load_recipe_lm()
    logp, logbo = lm.estimate([s.split() for s in SENTENCES], order)
    lm.write_arpa(tmp_path / "kn.arpa", logp, logbo)
    m = ArpaModel(tmp_path / "kn.arpa")
    assert m.order == order
    words = sorted(m.unigrams) + ["</s>", "<unk>"]
    contexts = [
        (),
        ("<s>",),
        ("THE",),
        ("ON", "THE"),
        ("<s>", "THE"),
        ("CAT", "SAT"),
        ("MAT", "THE", "CAT"),
        ("DOG", "DOG"),
        ("A",),
    ]
    for ctx in contexts:
        state = tuple(m._ids.get(w, m._ids["<unk>"]) for w in ctx)[-(order - 1) :] if order > 1 else ()
        total = sum(10 ** m.score(state, w)[0] for w in words)
        assert total == pytest.approx(1.0, abs=1e-5), ctx
    # seen continuations are more likely than unseen ones
    if order >= 2:
        the = (m._ids["THE"],)
        assert m.score(the, "CAT")[0] > m.score(the, "AND")[0]


def test_recipe_lm_command_writes_the_language_model_directory(tmp_path):
    lm = load_recipe_lm()
    text = tmp_path / "train.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "language_model"
    argv, sys.argv = sys.argv, ["lm.py", str(text), "--order", "3", "--out", str(out)]
    try:
        lm.main()
    finally:
        sys.argv = argv
    assert sorted(p.name for p in out.iterdir()) == ["attrs.json", "lm.arpa.gz", "unigrams.txt"]
    assert json.loads((out / "attrs.json").read_text())["alpha"] == 0.5
    assert "CAT'S" in (out / "unigrams.txt").read_text().split()
    assert ArpaModel(out / "lm.arpa.gz").order == 3


def test_recipe_lm_digits_round_the_log10_values_and_nothing_else(tmp_path):
    """`--digits 4` (the candidate-18 LM): every value to 4 decimals, the same n-grams, scores within 5e-5."""
    lm = load_recipe_lm()
    logp, logbo = lm.estimate([s.split() for s in SENTENCES], 3)
    lm.write_arpa(tmp_path / "six.arpa", logp, logbo)
    lm.write_arpa(tmp_path / "four.arpa", logp, logbo, digits=4)
    four_lines = (tmp_path / "four.arpa").read_text().splitlines()
    values = [v for line in four_lines if "\t" in line for v in line.split("\t")[::2] if v]
    assert values and all(len(v.split(".")[1]) == 4 for v in values)
    six, four = ArpaModel(tmp_path / "six.arpa"), ArpaModel(tmp_path / "four.arpa")
    assert [len(k) for k in six._keys] == [len(k) for k in four._keys]
    cases = [((), "CAT"), (("THE",), "CAT"), (("ON", "THE"), "MAT"), (("A",), "FOOD"), (("THE",), "THE")]
    for ctx, word in cases:
        state = tuple(six._ids[w] for w in ctx)
        tolerance = 5e-5 * (len(ctx) + 1)  # one rounded value per back-off step
        assert four.score(state, word)[0] == pytest.approx(six.score(state, word)[0], abs=tolerance)


# ---- in the beam search ----------------------------------------------------------------------------

from test_decoding import EN_VOCAB, ambiguous_cat, beam, write_arpa  # noqa: E402


def test_python_lm_moves_the_output_toward_the_likely_word(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kenlm", None)  # the pure-Python reader, even where kenlm is installed
    lp = ambiguous_cat()
    cat_lm = write_arpa(tmp_path / "cat.arpa", "CAT", "KAT")
    kat_lm = write_arpa(tmp_path / "kat.arpa", "KAT", "CAT")
    assert beam(EN_VOCAB, lp).text == "KAT"
    assert beam(EN_VOCAB, lp, lm_path=str(cat_lm)).text == "CAT"
    assert beam(EN_VOCAB, lp, lm_path=str(kat_lm)).text == "KAT"
    assert beam(EN_VOCAB, lp, lm_path=str(cat_lm), alpha=0.0, beta=0.0).text == "KAT"


def lm_dir(tmp_path: Path, alpha: float, files: tuple[str, ...] = ("lm.arpa",)) -> Path:
    d = tmp_path / "language_model"
    d.mkdir()
    for name in files:
        write_arpa(d / name, "CAT", "KAT")
    (d / "attrs.json").write_text(json.dumps({"alpha": alpha, "beta": 0.0}), encoding="utf-8")
    return d


def test_language_model_directory_settings_and_command_line_override(tmp_path):
    lp = ambiguous_cat()
    d = lm_dir(tmp_path, alpha=0.0)  # attrs.json switches the LM off...
    assert beam(EN_VOCAB, lp, lm_path=str(d)).text == "KAT"
    assert beam(EN_VOCAB, lp, lm_path=str(d), alpha=0.5).text == "CAT"  # ...the command line wins


def test_language_model_directory_needs_exactly_one_lm_file(tmp_path):
    d = lm_dir(tmp_path, alpha=0.5, files=("a.arpa", "b.arpa.gz"))
    with pytest.raises(errors.DecoderError, match="more than one LM file"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(d)))
    for p in d.glob("*.arpa*"):
        p.unlink()
    with pytest.raises(errors.DecoderError, match="language_model: no LM file"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(d)))
    (d / "attrs.json").write_text("[1]", encoding="utf-8")
    write_arpa(d / "lm.arpa", "CAT", "KAT")
    with pytest.raises(errors.DecoderError, match="attrs.json: not a JSON object"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(d)))


def test_bundled_lm_is_used_by_beam_search_only_unless_switched_off(tmp_path):
    lm_dir(tmp_path, alpha=0.5)
    beam_opts = DecodeOptions(kind="beam")
    assert bundled_lm(tmp_path) == tmp_path / "language_model"
    assert with_bundled_lm(beam_opts, tmp_path).lm_path == str(tmp_path / "language_model")
    assert with_bundled_lm(DecodeOptions(kind="greedy"), tmp_path).lm_path is None
    assert with_bundled_lm(DecodeOptions(kind="beam", bundled_lm=False), tmp_path).lm_path is None
    given = DecodeOptions(kind="beam", lm_path="other.arpa")
    assert with_bundled_lm(given, tmp_path).lm_path == "other.arpa"
    assert with_bundled_lm(beam_opts, tmp_path / "nowhere").lm_path is None
    # "auto" (the default): beam with the model's LM when it has one, else greedy unless beam is implied
    auto = DecodeOptions()
    assert auto.kind == "auto"
    assert (with_bundled_lm(auto, tmp_path).kind, with_bundled_lm(auto, tmp_path).lm_path) == (
        "beam",
        str(tmp_path / "language_model"),
    )
    assert with_bundled_lm(auto, tmp_path / "nowhere").kind == "greedy"
    assert with_bundled_lm(DecodeOptions(bundled_lm=False), tmp_path).kind == "greedy"  # --no-lm
    assert with_bundled_lm(DecodeOptions(hotwords=("cat",)), tmp_path / "nowhere").kind == "beam"


def test_the_embedded_model_ships_its_language_model():
    d = bundled_lm(EMBEDDED_DIR)
    assert d is not None
    m = ArpaModel(d / "lm.arpa.gz")
    assert m.order == 3 and len(m.unigrams) > 10_000
    # built from the recipe's training sentences and lm_text.py's text only (model card, "Language model"):
    # every word it knows comes from them, and a word only the held-out sentences have is unknown to it
    text = REPO / "recipes" / "synth-en" / "work" / "text"
    if (text / "heldout.txt").exists() and (text / "lm_extra.txt").exists():
        known = {w for name in ("train.txt", "lm_extra.txt") for w in (text / name).read_text().split()}
        assert m.unigrams - {"<s>", "</s>", "<unk>"} <= known
        only_held_out = {w for w in (text / "heldout.txt").read_text().split() if w not in known}
        assert only_held_out and not (only_held_out & m.unigrams)
    lm = ngram_language_model(m, LMParams(**json.loads((d / "attrs.json").read_text())))
    assert lm.score(lm.get_start_state(), "THE")[0] > lm.score(lm.get_start_state(), "XYZZY")[0]


@pytest.fixture
def both_readers(tmp_path):
    """(our ArpaModel, kenlm.Model) on the same Kneser-Ney 3-gram ARPA file; skips without kenlm."""
    kenlm = pytest.importorskip("kenlm")
    lm = load_recipe_lm()
    logp, logbo = lm.estimate([s.split() for s in SENTENCES], 3)
    lm.write_arpa(tmp_path / "kn.arpa", logp, logbo)
    return ArpaModel(tmp_path / "kn.arpa"), kenlm.Model(str(tmp_path / "kn.arpa"))


def test_kenlm_and_the_python_reader_agree(both_readers):
    ours, theirs = both_readers
    for sentence in SENTENCES + ["THE MAT SAT ON A DOG", "ZEBRA CAT", "A A A A"]:
        state, total = ours.start(True), 0.0
        for w in [*sentence.split(), "</s>"]:
            p, state = ours.score(state, w)
            total += p
        assert total == pytest.approx(theirs.score(sentence, bos=True, eos=True), abs=1e-4), sentence


def test_kenlm_and_the_python_reader_agree_word_by_word(both_readers):
    """Every (two-word context, word) pair, OOV words and sentence starts included, to float32 rounding."""
    import kenlm

    ours, theirs = both_readers
    words = sorted(ours.unigrams) + ["</s>", "ZEBRA"]
    for ctx in itertools.product(["<s>", *words], repeat=2):
        state, our_state = kenlm.State(), ours.start(False)
        theirs.NullContextWrite(state)
        for w in ctx:
            if w == "<s>":
                theirs.BeginSentenceWrite(state)
                our_state = ours.start(True)
                continue
            after = kenlm.State()
            theirs.BaseScore(state, w, after)
            state, (_, our_state) = after, ours.score(our_state, w)
        for w in words:
            expected = theirs.BaseScore(state, w, kenlm.State())
            assert ours.score(our_state, w)[0] == pytest.approx(expected, abs=1e-6), (ctx, w)


def test_kenlm_loading_prints_nothing(tmp_path, capfd):
    """KenLM writes a progress bar to file descriptor 2 while it reads: stderr is for sew's messages."""
    pytest.importorskip("kenlm")
    build_decoder(
        EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(write_arpa(tmp_path / "cat.arpa", "CAT", "KAT")))
    )
    out, err = capfd.readouterr()
    assert out == "" and "Reading" not in err and "****" not in err, err


def test_large_arpa_without_kenlm_warns(tmp_path, monkeypatch, caplog):
    import sewcli.decoding as decoding

    monkeypatch.setitem(sys.modules, "kenlm", None)
    monkeypatch.setattr(decoding, "LARGE_ARPA_BYTES", 100)
    path = write_arpa(tmp_path / "big.arpa", "CAT", "KAT")
    with caplog.at_level("WARNING", logger="sewcli.decoding"):
        build_decoder(EN_VOCAB, DecodeOptions(kind="beam", lm_path=str(path)))
    assert "big.arpa" in caplog.text and "pip install 'sewcli[lm]'" in caplog.text
