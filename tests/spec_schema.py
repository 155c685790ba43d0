"""Result schemas of the execution-apis specification, for checking what the node returns.

The spec's methods (src/eth/*.yaml) give each result a JSON schema whose `$ref`s point
into `#/components/schemas/...`, defined across src/schemas/*.yaml. All of it goes into
one document registered with `referencing`, so a method's result schema resolves its
references there. Tests skip (with the reason) when the spec is not checked out.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "execution-apis"
SPEC_URI = "urn:execution-apis"


def spec_available() -> bool:
    return (SPEC_DIR / "src" / "eth").is_dir() and (SPEC_DIR / "src" / "schemas").is_dir()


def require_spec() -> Path:
    if not spec_available():
        pytest.skip(f"execution-apis specification not found at {SPEC_DIR}")
    return SPEC_DIR


@lru_cache(maxsize=None)
def _document() -> dict:
    import yaml

    schemas: dict[str, Any] = {}
    for path in sorted((SPEC_DIR / "src" / "schemas").glob("*.yaml")):
        schemas.update(yaml.safe_load(path.read_text()))
    methods: dict[str, Any] = {}
    for path in sorted((SPEC_DIR / "src" / "eth").glob("*.yaml")):
        for method in yaml.safe_load(path.read_text()):
            methods[method["name"]] = method["result"]["schema"]
    return {"components": {"schemas": schemas}, "methods": methods}


@lru_cache(maxsize=None)
def _validator(method: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    document = _document()
    if method not in document["methods"]:
        raise KeyError(f"{method} is not in the execution-apis specification")
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(SPEC_URI, resource)
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/methods/{method}"}, registry=registry)


def assert_matches_result_schema(method: str, result: Any) -> None:
    """Fail with every schema violation of `result` as `method`'s result (skip: no spec)."""
    require_spec()
    errors = sorted(_validator(method).iter_errors(result), key=lambda e: list(e.path))
    assert not errors, f"{method} result breaks its schema:\n" + "\n".join(
        f"  at {list(e.path)}: {e.message[:300]}" for e in errors
    )
