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


def test_usage_errors_do_not_import_torch():
    """Option parsing builds every stage's options without torch, so a usage error exits at once."""
    code = (
        "import sys\n"
        "from sewcli import cli\n"
        "for argv in (['transcribe', 'x.wav', '--decoder', 'greedy', '--hotword', 'x'],\n"
        "             ['transcribe', 'x.wav', '--chunk-length', '2', '--chunk-overlap', '3'],\n"
        "             ['transcribe', 'x.wav', '--exit-layer', 'foo']):\n"
        "    sys.argv = ['sew', *argv]\n"
        "    try:\n"
        "        cli.main()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 2, (argv, e.code)\n"
        "    assert 'torch' not in sys.modules, ('torch imported', argv)\n"
        "import sewcli.pipeline, sewcli.inference_options\n"
        "assert 'torch' not in sys.modules, 'torch imported by the pipeline module'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("error:") == 3, out.stderr
