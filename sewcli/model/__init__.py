"""Model engine: SEW, SEW-D and wav2vec2 CTC models in plain PyTorch, and checkpoint loading.

Importing this package is cheap (no torch); import `sewcli.model.sew`, `.wav2vec2`, `.sew_d` or `.load`
for the modules themselves.
"""
