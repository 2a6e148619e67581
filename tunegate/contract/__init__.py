"""What an outside schemathesis run needs to check tunegate's contract against a running server.

openapi.yaml states most of the contract, but not all of it: a job's ``training_file`` must
name an uploaded file, base models cannot be deleted, completions refuse what tunegate cannot
honour. ``rules`` rewrites each generated request to meet those rules, ``hooks`` applies them
in a schemathesis run (the ``hooks`` its config names), and ``CONFIG`` is that config:
``schemathesis.toml``, shipped in the package so that a run from any folder can use it::

    schemathesis --config-file "$(python -m tunegate.contract)" \\
        run http://127.0.0.1:8000/v1/openapi.json --checks all

The repository's own ``schemathesis.toml`` is the same file (this one links to it), so a run
from the checkout's root reads it without ``--config-file``.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
