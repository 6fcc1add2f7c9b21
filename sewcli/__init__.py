"""sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models.

Importing this package must stay cheap (no torch): `sew --help` is timed.
"""

__version__ = "0.1.0"
