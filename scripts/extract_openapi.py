"""Cut the parts of Klaviyo's OpenAPI description this project uses out of the whole spec.

Usage: python scripts/extract_openapi.py PATH/TO/stable.json

Writes src/klaviyo_analytics/sandbox/openapi/klaviyo-openapi.json: the operations under the
resources the sandbox answers and the API client calls, with every component they reference
(transitively) and nothing else. Re-run it when the project moves to a newer revision, then
update REVISION and the checksum in that folder's README.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

# The first path segment after /api/ of every resource the project reads or the sandbox answers.
RESOURCES = {
    "accounts", "metrics", "events", "profiles", "campaigns", "campaign-messages",
    "campaign-recipient-estimations", "flows", "flow-actions", "flow-messages", "lists",
    "segments", "forms", "form-versions", "templates", "tags", "campaign-values-reports",
    "flow-values-reports", "flow-series-reports", "form-values-reports", "form-series-reports",
    "segment-values-reports", "segment-series-reports", "metric-aggregates",
}  # fmt: skip
OUT = Path(__file__).resolve().parents[1] / "src/klaviyo_analytics/sandbox/openapi"


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    """Return `spec` cut down to RESOURCES' paths and the components they reach."""
    paths = {p: ops for p, ops in spec["paths"].items()
             if p.startswith("/api/") and p.split("/")[2] in RESOURCES}  # fmt: skip
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        pending |= _refs(node)
    for kind in ("securitySchemes",):
        if kind in spec["components"]:
            components[kind] = spec["components"][kind]
    out = {k: spec[k] for k in ("openapi", "info", "servers", "security") if k in spec}
    out["paths"] = paths
    out["components"] = {k: dict(sorted(v.items())) for k, v in sorted(components.items())}
    return out


def main() -> None:
    source = Path(sys.argv[1])
    raw = source.read_bytes()
    spec = extract(json.loads(raw))
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / "klaviyo-openapi.json"
    target.write_text(json.dumps(spec, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"{target}: {len(spec['paths'])} paths, {target.stat().st_size:,} bytes")
    print(f"source {source}: revision {spec['info']['version']}, "
          f"sha256 {hashlib.sha256(raw).hexdigest()}")  # fmt: skip


if __name__ == "__main__":
    main()
