"""English spoken by MBROLA's German, French, Spanish, Italian and Dutch voices: more accented human speakers.

The same two passes as `accent.py` (festival's English front end gives phones, durations and f0 targets; each
phone is mapped to the nearest phone(s) of the voice's language), with MBROLA as the back end: its diphone
databases are recordings of 23 more speakers (Debian non-free), and it reads the mapped segments as a .pho
file (`phone duration-ms [percent f0]...`). MBROLA voices name their phones in SAMPA, so one list of
renderings per English phone serves every language: the first whose phones the voice has (probed once per
voice, `table`) is used, e.g. English "th" is T where the voice has it (Spanish), else s (German, French).
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import accent


def _candidates(spec: str) -> dict[str, tuple[str, ...]]:
    pairs = (item.split(":", 1) for item in spec.split())
    return {en: tuple(to.split(",")) for en, to in pairs}


# English (festival "radio" phone) -> renderings in order of preference, "+" between two phones, "-" for none.
CANDIDATES = _candidates("""
    aa:A:,a:,A,a ae:{,E,e ah:V,a,6,@ ao:O:,O,o aw:aU,Au,a+u,A+u ax:@,e,E axr:@+r,@+R,e+r,6,E+R
    ay:aI,ai,a+i,A+i,a+j b:b ch:tS,t+S d:d dh:D,d dx:d eh:E,e el:@+l,e+l,E+l em:@+m,e+m,E+m
    en:@+n,e+n,E+n er:3:,@+r,@+R,9+R,e+r ey:eI,e:,e+i,E+i,e+j f:f g:g hh:h,x,- hv:h,x,- ih:I,i
    iy:i:,i jh:dZ,d+Z,jj k:k l:l m:m n:n nx:n ng:N,n+g,n ow:oU,@U,o:,o+u,O+u,o oy:OY,OI,O+i,O+j,o+i
    p:p r:r,R s:s sh:S,s t:t th:T,s,t uh:U,u uw:u:,u v:v,b w:w,u,v y:j,jj,i z:z,s zh:Z,z,S,s
    """)
PAUSE = "_"
# voice -> its own mean f0 in Hz (the pitch the job's draw is centred on): mbrola reading "_ a _" with no
# pitch targets, by autocorrelation; es2, which read exactly 200 Hz, is a male voice (`mbrola -i`): 110.
# Left out: de8, es3, vz1 and nl1, which lack p, tS, b and every "a" under these names (`table` refuses
# them), and it1, it2, whose phone names are not SAMPA.
VOICES: dict[str, float] = {
    "de1": 178.0, "de2": 94.0, "de3": 170.0, "de4": 119.0, "de5": 184.0, "de6": 110.0, "de7": 172.0,
    "fr1": 133.0, "fr2": 200.0, "fr3": 107.0, "fr4": 184.0, "fr5": 114.0, "fr6": 133.0,
    "fr7": 123.0, "es1": 107.0, "es2": 110.0, "es4": 155.0, "mx1": 133.0, "mx2": 145.0, "it3": 114.0,
    "it4": 182.0, "nl2": 100.0, "nl3": 178.0,
}  # fmt: skip
PACKAGES = " ".join(f"mbrola-{v}" for v in VOICES)
MBROLA_DIR = Path("/usr/share/mbrola")


def missing_voices(mbrola_dir: Path = MBROLA_DIR) -> list[str]:
    """The voices of VOICES that are not installed here (generation refuses to start without them)."""
    return [v for v in VOICES if not (mbrola_dir / v / v).is_file()]


def _says(voice: str, pho: str, tmp: Path) -> bool:
    """Whether mbrola reads `pho` in `voice` without an error (every diphone in it exists)."""
    src = tmp / f"probe_{voice}.pho"
    src.write_text(pho)
    run = subprocess.run(["mbrola", str(MBROLA_DIR / voice / voice), str(src), str(tmp / "probe.wav")],
                         capture_output=True, timeout=60)
    return run.returncode == 0


@functools.cache
def phones(voice: str) -> frozenset[str]:
    """The phones of CANDIDATES that `voice` has: each is said between two of a few pauses, vowels and
    consonants until one pair works (a database holds only the diphones its language uses)."""
    names = {p for specs in CANDIDATES.values() for spec in specs for p in spec.split("+") if p != "-"}
    around = (PAUSE, "a", "a:", "A", "e", "i", "o", "t", "k", "s", "n", "l")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        return frozenset(
            p for p in names if any(_says(voice, f"{a} 80\n{p} 120\n{a} 80\n", tmp) for a in around)
        )


def table(voice: str) -> dict[str, str]:
    """English phone -> the voice's phone(s), space-separated ("" for none): the first rendering it has."""
    have = phones(voice)
    out = {}
    for en, specs in CANDIDATES.items():
        usable = [s for s in specs if s == "-" or all(p in have for p in s.split("+"))]
        if not usable:
            raise ValueError(f"mbrola voice {voice} has no rendering of English {en!r} among {specs}")
        out[en] = "" if usable[0] == "-" else usable[0].replace("+", " ")
    return out


def pho(segs: list[tuple[str, float, list[tuple[float, float]]]]) -> str:
    """MBROLA's .pho text for segments: `phone ms [percent f0]...` per line."""
    lines = []
    for p, d, tg in segs:
        pts = "".join(f" {min(max(o / d, 0.0), 1.0) * 100:.0f} {f:.0f}" for o, f in tg) if d > 0 else ""
        lines.append(f"{p} {d * 1000:.0f}{pts}")
    return "\n".join(lines + [""])


# A phone -> what a speaker of the language says instead where its database lacks the diphone (final devoicing
# in German and Dutch: "his" -> "hiss"; long vowels short; "" drops it): tried on a missing pair's left phone,
# then its right, until mbrola reads the utterance without a gap (`_repaired`).
FALLBACK = {
    "z": "s", "Z": "S", "v": "f", "b": "p", "d": "t", "g": "k", "dZ": "tS", "D": "d", "T": "t", "r": "R",
    "R": "r", "h": "", "w": "u", "j": "i", "jj": "i", "A:": "A", "a:": "a", "e:": "e", "i:": "i", "o:": "o",
    "O:": "O", "u:": "u", "3:": "@", "N": "n",
}  # fmt: skip


def _missing(voice: str, pho_path: Path, wav: Path) -> set[tuple[str, str]]:
    """Read `pho_path` into `wav`; the diphones mbrola lacked (it said silence for each)."""
    run = subprocess.run(["mbrola", "-e", str(MBROLA_DIR / voice / voice), str(pho_path), str(wav)],
                         check=True, capture_output=True, text=True, errors="replace", timeout=600)
    gaps = set()
    for line in run.stderr.splitlines():  # "Warning: z-h unknown, replaced with _-_"
        if line.startswith("Warning:") and " unknown" in line:
            a, _, b = line.split()[1].partition("-")
            gaps.add((a, b))
    return gaps


def _repaired(segs: list, gaps: set[tuple[str, str]]) -> list | None:
    """segs with one phone of each missing pair replaced by its FALLBACK; None when none has one."""
    out, changed = list(segs), False
    for i in range(len(out) - 1):
        a, b = out[i][0], out[i + 1][0]
        if (a, b) not in gaps:
            continue
        k = i if a in FALLBACK else i + 1 if b in FALLBACK else None
        if k is not None:
            out[k] = (FALLBACK[out[k][0]], *out[k][1:])
            changed = True
    if not changed:
        return None
    kept: list = []
    for seg in out:  # a phone dropped ("") gives its time to the one before
        if seg[0]:
            kept.append(seg)
        elif kept:
            kept[-1] = (kept[-1][0], kept[-1][1] + seg[1], kept[-1][2])
    return kept


def say(voice: str, segs: list, tmp: Path, name: str) -> tuple[Path, int]:
    """Synthesize mapped segments in `voice`, missing diphones repaired (up to 4 passes); (wav, gaps left)."""
    src, wav = tmp / f"{name}.pho", tmp / f"{name}.wav"
    full = [(PAUSE, 0.05, [])] + list(segs) + [(PAUSE, 0.05, [])]
    for _ in range(4):
        src.write_text(pho(full))
        gaps = _missing(voice, src, wav)
        if not gaps or (fixed := _repaired(full, gaps)) is None:
            return wav, len(gaps)
        full = fixed
    src.write_text(pho(full))  # repaired four times: read once more, whatever is left
    return wav, len(_missing(voice, src, wav))


def synth_batch(
    texts: list[str], voice: str, rates: list[float], f0_means: list[float], tmp: Path
) -> list[Path]:
    """Synthesize texts in a non-English MBROLA voice; the wav paths (16 or 22.05 kHz, the voice's rate)."""
    segs = accent.english_segments(texts, [1.0 / r for r in rates], tmp)
    mapping = table(voice)
    paths = []
    for k, (s, f0m) in enumerate(zip(segs, f0_means, strict=True)):
        mapped = accent.map_segments(s, mapping, PAUSE, f0m / accent.KAL_F0_MEAN)
        paths.append(say(voice, mapped, tmp, f"mb{k}")[0])
    return paths
