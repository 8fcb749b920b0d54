"""Airbyte's Klaviyo connector (airbyte-source-klaviyo 2.13.1) in a scratch virtual environment.

Shared by the conformance test and bench/bench_sync.py: the package is pip-installed into its
own virtual environment (never the project's), cached in
`~/.cache/klaviyo-analytics/airbyte-2.13.1` (`KLAVIYO_ANALYTICS_CACHE` moves the cache), and
its base URL becomes a config value (`url_base`) by an idempotent patch of the installed copy's
manifest and its campaigns_detailed transformation; the default stays Klaviyo's.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

PACKAGE = "airbyte-source-klaviyo==2.13.1"
KLAVIYO = "https://a.klaviyo.com/api/"
CONFIG_URL = "{{ config.get('url_base', 'https://a.klaviyo.com/api/') }}"


class AirbyteUnavailableError(RuntimeError):
    """The connector could not be installed (pip's reason in the message)."""


def cache_dir() -> Path:
    """Return the scratch virtual environment's folder."""
    root = Path(os.environ.get("KLAVIYO_ANALYTICS_CACHE", Path.home() / ".cache/klaviyo-analytics"))
    return root / "airbyte-2.13.1"


def patch(package: Path) -> None:
    """Make the connector's base URL a config value (idempotent; the default stays Klaviyo's)."""
    manifest = package / "manifest.yaml"
    text = manifest.read_text()
    if f'url_base: "{KLAVIYO}"' in text:
        manifest.write_text(text.replace(f'url_base: "{KLAVIYO}"', f'url_base: "{CONFIG_URL}"'))
    details = package / "components" / "campaign_details_transformations.py"
    code = details.read_text()
    marker = '        self._api_key = self.config["api_key"]\n'
    patched = marker + '        self.url_base = self.config.get("url_base", self.url_base)\n'
    if patched not in code:
        details.write_text(code.replace(marker, patched))


def install() -> Path:
    """Return the `source-klaviyo` entry point of the scratch venv, installing it if needed.

    Raises AirbyteUnavailableError with pip's last lines when the package cannot be installed.
    """
    home = cache_dir()
    entry = home / "bin" / "source-klaviyo"
    if not entry.exists():
        home.parent.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        done = subprocess.run(
            [str(home / "bin" / "python"), "-m", "pip", "install", "-q", PACKAGE],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not entry.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise AirbyteUnavailableError(f"{PACKAGE} cannot be installed: {' | '.join(tail)}")
    packages = sorted((home / "lib").glob("python3*/site-packages/source_klaviyo"))
    if not packages:
        raise AirbyteUnavailableError(
            f"{PACKAGE} is installed in {home} but its package folder is missing"
        )
    patch(packages[0])
    return entry
