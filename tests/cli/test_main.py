import subprocess
import sys

from msa_toolkit import __version__


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from msa_toolkit.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'mediapipe', 'faster_whisper', 'opensmile', 'librosa', 'cv2')"
        " if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = _run(code)
    assert "Usage" in out
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_version():
    out = subprocess.run([sys.executable, "-m", "msa_toolkit", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert __version__ in out.stdout
