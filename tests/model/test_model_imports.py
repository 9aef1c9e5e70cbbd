"""`darwin.model` stays independent of `darwin.protocol` and imports transformers lazily."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
import darwin.model
loaded = sorted(m for m in sys.modules if m.startswith(("darwin.protocol", "transformers.models.")))
print(",".join(loaded))
"""


def test_import_loads_no_protocol_and_no_model_code() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == ""
