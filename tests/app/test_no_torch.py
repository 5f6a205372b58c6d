"""The service runs where torch is not installed (the API image has none): importing the app
and everything a request can reach must not import torch. The Docker test checks the image
itself, but it needs an engine; this checks the import graph everywhere."""

from __future__ import annotations

import subprocess
import sys


def test_the_service_imports_no_torch() -> None:
    probe = (
        "import sys; import app.main, app.sync_job, app.jobs, index.sync, index.duplicates, index.atlas; "
        "print(sorted(m for m in ('torch', 'torchvision', 'scipy', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", f"the service imports {done.stdout.strip()}"
