"""English spoken by festival's non-English voices: accented English from recorded human speakers.

Debian packages festival diphone voices of Italian, Finnish, Czech and Hindi speakers. None of them reads
English text, but each can say any sequence of its own language's phones. So an utterance is made in two
festival passes: festival's English front end (the ``kal_diphone`` voice: CMU lexicon, letter-to-sound rules,
duration and intonation models) turns the text into English phones with durations and f0 targets; each phone
is mapped to the nearest phone(s) of the target voice's language (the tables below: diphthongs become two
phones, sounds the language lacks become its nearest ones, as a speaker of it would say them); and the target
voice synthesizes that segment list (festival's ``Segments`` utterance type) with the English timing and the
f0 contour moved to the job's pitch. The result is English with a foreign accent, in the voice of a real
(diphone-recorded) speaker that no English engine has: new timbres for the acoustic model, whose unseen-voice
error is its largest.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


# English (festival "radio" phone set, as kal_diphone's front end writes it) -> target phone(s), per language:
# "english:target", "+" between two target phones, "-" for none (the sound is dropped).
def _table(spec: str) -> dict[str, str]:
    pairs = (item.split(":", 1) for item in spec.split())
    return {en: "" if to == "-" else to.replace("+", " ") for en, to in pairs}


_IT = _table("""
    aa:a ae:E ah:a ao:O aw:a+u ax:e axr:e+r ay:a+i b:b ch:tS d:d dh:d dx:d eh:E el:e+l em:e+m
    en:e+n er:e+r ey:e+i f:f g:g hh:- hv:- ih:i iy:i jh:dZ k:k l:l m:m n:n nx:n ng:ng ow:o+u oy:O+i
    p:p r:r s:s sh:S t:t th:t uh:u uw:u v:v w:w y:j z:z zh:Z
""")
_FI = _table("""
    aa:a: ae:e ah:a ao:o: aw:a+u ax:e axr:e+r ay:a+i b:b ch:t+S d:d dh:d dx:d eh:e el:e+l em:e+m
    en:e+n er:e+r ey:e+i f:f g:g hh:h hv:h ih:i iy:i: jh:d+j k:k l:l m:m n:n nx:n ng:N ow:o+u
    oy:o+i p:p r:r s:s sh:S t:t th:T uh:u uw:u: v:v w:v y:j z:s zh:S
""")
_CS = _table("""
    aa:a: ae:e ah:a ao:o: aw:a+u ax:e axr:e+r ay:a+j b:b ch:c~ d:d dh:d dx:d eh:e el:e+l em:e+m
    en:e+n er:e+r ey:e+j f:f g:g hh:h hv:h ih:i iy:i: jh:dz~ k:k l:l m:m n:n nx:n ng:n+g ow:o+u
    oy:o+j p:p r:r s:s sh:s~ t:t th:t uh:u uw:u: v:v w:v y:j z:z zh:z~
""")
_HI = _table("""
    aa:aa ae:eh ah:a ao:aw aw:a+uh ax:a axr:a+r ay:a+ih b:b ch:ch d:D dh:d dx:D eh:eh el:a+l em:a+m
    en:a+n er:a+r ey:ee f:f g:g hh:h hv:h ih:ih iy:iy jh:j k:k l:l m:m n:n nx:n ng:n+g ow:oh
    oy:aw+ih p:p r:r s:s sh:sh t:T th:th uh:uh uw:uw v:v w:w y:y z:j zh:zh
""")

# voice -> (phone map, pause phone, the voice's own mean f0 in Hz: the pitch the job's draw is centred on)
VOICES: dict[str, tuple[dict[str, str], str, float]] = {
    "lp_diphone": (_IT, "#", 200.0),
    "pc_diphone": (_IT, "#", 110.0),
    "suo_fi_lj_diphone": (_FI, "#", 190.0),
    "hy_fi_mv_diphone": (_FI, "#", 105.0),
    "czech_dita": (_CS, "#", 200.0),
    "czech_machac": (_CS, "#", 110.0),
    "czech_ph": (_CS, "#", 110.0),
    "czech_krb": (_CS, "#", 230.0),
    "hindi_NSK_diphone": (_HI, "pau", 115.0),
}
# The Debian packages that hold them (festival-hi has the Hindi voice's front-end files).
PACKAGES = (
    "festvox-italp16k festvox-itapc16k festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita "
    "festvox-czech-machac festvox-czech-ph festvox-czech-krb festvox-hi-nsk festival-hi"
)
VOICE_DIR = Path("/usr/share/festival/voices")
KAL_F0_MEAN = 105.0  # kal_diphone's intonation model mean (int_lr_params target_f0_mean)
PAUSES = ("pau", "h#", "brth")


def missing_voices(voice_dir: Path = VOICE_DIR) -> list[str]:
    """The voices of VOICES that festival does not have here (generation refuses to start without them)."""
    return [v for v in VOICES if not any(voice_dir.glob(f"*/{v}"))]


def english_segments(texts: list[str], stretches: list[float], tmp: Path) -> list[list[tuple]]:
    """festival's English front end: per text, [(phone, duration s, [(offset s, f0 Hz), ...]), ...]."""
    lines = ["(voice_kal_diphone)"]
    for k, (txt, st) in enumerate(zip(texts, stretches, strict=True)):
        txt = txt.lower().replace('"', "")
        lines += [
            f"(Parameter.set 'Duration_Stretch {st:.3f})",
            f'(set! u (utt.synth (Utterance Text "{txt}")))',
            f'(format t "@@ {k}\\n")',
            '(mapcar (lambda (s) (format t "%s %f %f" (item.name s) (item.feat s "segment_duration")'
            ' (item.feat s "segment_start")) (let ((tr (item.relation s \'Target))) (if tr (mapcar'
            ' (lambda (x) (format t " %f %f" (item.feat x "pos") (item.feat x "f0")))'
            ' (item.daughters tr)))) (format t "\\n")) (utt.relation.items u \'Segment))',
        ]
    script = tmp / "front.scm"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["festival", "-b", str(script)], check=True, capture_output=True, text=True, timeout=3600
    )
    utts: list[list[tuple]] = [[] for _ in texts]
    cur = None
    for line in out.stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "@@":
            cur = utts[int(parts[1])]
            continue
        if cur is None or len(parts) < 3:
            continue
        start = float(parts[2])
        vals = [float(x) for x in parts[3:]]
        targets = [(vals[i] - start, vals[i + 1]) for i in range(0, len(vals) - 1, 2)]
        cur.append((parts[0], float(parts[1]), targets))
    return utts


def to_voice(
    segs: list[tuple], voice: str, f0_scale: float
) -> list[tuple[str, float, list[tuple[float, float]]]]:
    """Map English segments to the voice's phones; a phone mapped to two splits its duration and targets."""
    table, pause, _ = VOICES[voice]
    return map_segments(segs, table, pause, f0_scale)


def map_segments(
    segs: list[tuple], table: dict[str, str], pause: str, f0_scale: float
) -> list[tuple[str, float, list[tuple[float, float]]]]:
    """`to_voice` with the phone table and pause phone given (mbrola_accent.py's voices use it too)."""
    out: list[tuple[str, float, list[tuple[float, float]]]] = []
    for name, dur, targets in segs:
        phones = [pause] if name in PAUSES else table[name].split()
        if not phones:  # a sound the language drops (Italian h): its time goes to the previous phone, if any
            if out:
                p, d, t = out[-1]
                out[-1] = (p, d + dur, t)
            continue
        part = dur / len(phones)
        for i, p in enumerate(phones):
            tg = [
                (off - i * part, f0 * f0_scale)
                for off, f0 in targets
                if i * part <= off < (i + 1) * part + 1e-9
            ]
            out.append((p, part, tg))
    return out


def segments_scheme(segs: list[tuple[str, float, list[tuple[float, float]]]]) -> str:
    """The Scheme segment list of festival's Segments utterance type: (name dur (offset f0) ...)."""
    items = []
    for p, d, tg in segs:
        items.append(f"({p} {d:.4f}" + "".join(f" ({max(o, 0.0):.4f} {f:.1f})" for o, f in tg) + ")")
    return "(" + " ".join(items) + ")"


def synth_batch(
    texts: list[str], voice: str, rates: list[float], f0_means: list[float], tmp: Path
) -> list[Path]:
    """Synthesize texts in a non-English festival voice; the wav paths (one festival process per pass)."""
    segs = english_segments(texts, [1.0 / r for r in rates], tmp)
    lines = [f"(voice_{voice})"]
    paths = []
    for k, (s, f0m) in enumerate(zip(segs, f0_means, strict=True)):
        path = tmp / f"fx{k}.wav"
        paths.append(path)
        mapped = to_voice(s, voice, f0m / KAL_F0_MEAN)
        lines += [
            f"(set! u (Utterance Segments {segments_scheme(mapped)}))",
            "(utt.synth u)",
            f'(utt.save.wave u "{path}" \'riff)',
        ]
    script = tmp / "back.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, timeout=3600)
    return paths
