"""The deployed service never loads the development tools (the emulator, the services runner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_it_serves_without_importing_the_development_tools() -> None:
    # A fresh interpreter: loading the ASGI app and every URL must not touch `devtools`.
    script = (
        "import json, sys, django\n"
        "from project.asgi import application\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns\n"
        "import project.admin, reports.admin, tpa.admin\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'devtools' or m.startswith('devtools.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy(), check=True, timeout=60
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
