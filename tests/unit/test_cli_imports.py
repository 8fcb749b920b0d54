"""The CLI's start-up cost: every `sync` process pays it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules",
    [
        # statsmodels, scipy and pandas took ~1.8 s of CPU and ~110 MiB at every command's
        # start when a command module imported the forecast models at its top (issue 17).
        ("statsmodels", "scipy", "pandas"),
        # FastAPI, uvicorn and NumPy (the sandbox's generator) took 0.5 s of CPU at the start
        # of every command, `sync` included, though only `serve`, `sandbox` and `demo` use them.
        ("fastapi", "uvicorn", "numpy"),
    ],
)
def test_importing_the_cli_loads_none_of_what_only_some_commands_need(
    modules: tuple[str, ...],
) -> None:
    code = (
        "import sys, klaviyo_analytics.cli.main; "
        f"print(sorted(m for m in {modules!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
