"""The README's hardening table lists exactly the cases the tests mark (docs/hardening.py --check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_lists_every_marked_hardening_case():
    completed = subprocess.run([sys.executable, "docs/hardening.py", "--check", "README.md"], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
