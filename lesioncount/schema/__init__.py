"""The published JSON Schema of count results, and a validator."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema


@lru_cache(maxsize=1)
def count_result_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``CountResult.to_dict()``, schema v1."""
    return json.loads(resources.files(__package__).joinpath("count_result.v1.json").read_text())


def validate_count_result(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` is not a valid v1 count result."""
    jsonschema.Draft202012Validator(count_result_schema()).validate(doc)
