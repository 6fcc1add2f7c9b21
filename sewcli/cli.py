"""Command-line interface (placeholder until the transcribe issue lands)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _root() -> None:
    """sew: offline speech-to-text with SEW, SEW-D and wav2vec2 CTC models."""


def main() -> None:
    app()
