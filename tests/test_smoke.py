"""The installed package imports and `python -m sewcli --help` works without torch being imported."""

import subprocess
import sys


def test_help_runs():
    command = [sys.executable, "-m", "sewcli", "--help"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_light_modules_do_not_import_torch():
    code = (
        "import sys, sewcli, sewcli.cli, sewcli.records, sewcli.errors; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
