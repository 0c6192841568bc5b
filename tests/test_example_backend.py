"""Run the documented third-party backend example (examples/minimal_backend) in CI.

It implements only the five required Bucket methods, so this also proves that the
generic incr/compute/batch/scan versions in plugstore.Bucket honour the contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "minimal_backend"
sys.path.insert(0, str(EXAMPLE))

from test_minimal_conformance import TestMinimalBackend  # noqa: E402

__all__ = ["TestMinimalBackend"]
