"""JSON Schema of ``VisitComparison.to_dict()`` (``kind: lesioncount.visit_comparison``, schema 1.0).

Documented field by field in docs/compare.md. Validate with ``jsonschema.validate(obj, VISIT_COMPARISON_SCHEMA)``.
Each visit's full count result (``visits[].result``) follows the count schema v1
(``lesioncount/schema/count_result.v1.json``) and is not repeated here.
"""

from __future__ import annotations

from typing import Any

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_CHANGE = {
    "type": "object",
    "required": ["baseline", "followup", "absolute", "percent"],
    "properties": {
        "baseline": {"type": "integer", "minimum": 0},
        "followup": {"type": "integer", "minimum": 0},
        "absolute": {"type": "integer"},
        "percent": _NUM_OR_NULL,
        "within_retest_noise": {"type": "boolean"},
    },
}
_CHANGES = {
    "type": "object",
    "required": ["inflammatory", "comedone", "scar", "total_acne"],
    "additionalProperties": _CHANGE,
}
_TALLY = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["resolved", "persisting", "new", "uncertain", "out_of_view"],
        "additionalProperties": {"type": "integer", "minimum": 0},
    },
}
_GRADE = {
    "type": ["object", "null"],
    "required": ["baseline", "followup", "change"],
    "properties": {"baseline": _NUM, "followup": _NUM, "change": _NUM},
}
_INDEX_LIST = {"type": "array", "items": {"type": "integer", "minimum": 0}}

VISIT_COMPARISON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "lesioncount visit comparison",
    "type": "object",
    "required": ["schema_version", "kind", "visits", "pairs", "durability", "responder_threshold_pct", "warnings"],
    "properties": {
        "schema_version": {"const": "1.1"},
        "kind": {"const": "lesioncount.visit_comparison"},
        "responder_threshold_pct": _NUM,
        "warnings": {"type": "array", "items": {"type": "string"}},
        "visits": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["index", "name", "date", "view", "counts", "counts_by_region", "grades", "result"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "name": {"type": "string"},
                    "date": {"type": ["string", "null"], "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                    "view": {"enum": ["front", "left", "right"]},
                    "age_years": _NUM_OR_NULL,
                    "treatment": {"type": ["string", "null"]},
                    "image": {"type": "string"},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "counts_by_region": {"type": "object"},
                    "grades": {"type": "object"},
                    "photo_stats": {"type": ["object", "null"]},
                    "measures": {
                        "type": ["object", "null"],
                        "properties": {"shine_fraction": _NUM, "erythema_index": _NUM, "skin_px": {"type": "integer"}},
                    },
                    "result": {"type": "object", "required": ["schema_version", "lesions", "counts"]},
                },
            },
        },
        "pairs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "view",
                    "baseline_index",
                    "followup_index",
                    "days",
                    "registration",
                    "comparability",
                    "match",
                    "change",
                    "region_change",
                    "grades",
                    "responder",
                    "secondary",
                    "counted_in_baseline_frame",
                ],  # fmt: skip
                "properties": {
                    "view": {"enum": ["front", "left", "right"]},
                    "baseline_index": {"type": "integer", "minimum": 0},
                    "followup_index": {"type": "integer", "minimum": 0},
                    "days": _NUM_OR_NULL,
                    "registration": {
                        "type": ["object", "null"],
                        "required": ["matrix", "method", "quality", "quality_label", "rotation_deg", "scale"],
                        "properties": {
                            "matrix": {
                                "type": "array",
                                "minItems": 2,
                                "maxItems": 2,
                                "items": {"type": "array", "minItems": 3, "maxItems": 3, "items": _NUM},
                            },
                            "method": {"type": "string"},
                            "quality": _NUM,
                            "quality_label": {"enum": ["good", "fair", "poor"]},
                        },
                    },
                    "comparability": {
                        "type": ["object", "null"],
                        "required": ["score", "comparable", "lighting_comparable", "exposure_stops", "warnings"],
                        "properties": {
                            "score": {"type": "number", "minimum": 0, "maximum": 1},
                            "comparable": {"type": "boolean"},
                            "lighting_comparable": {"type": "boolean"},
                            "exposure_stops": _NUM,
                            "warnings": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "match": {
                        "type": ["object", "null"],
                        "required": ["tolerance_px", "pairs", "resolved", "new", "by_class", "by_region"],
                        "properties": {
                            "tolerance_px": _NUM,
                            "pairs": {"type": "array", "items": _INDEX_LIST},
                            "resolved": _INDEX_LIST,
                            "new": _INDEX_LIST,
                            "base_out_of_view": _INDEX_LIST,
                            "follow_out_of_view": _INDEX_LIST,
                            "base_uncertain": _INDEX_LIST,
                            "follow_uncertain": _INDEX_LIST,
                            "by_class": _TALLY,
                            "by_region": {"type": "object", "additionalProperties": _TALLY},
                        },
                    },
                    "change": _CHANGES,
                    "region_change": {"type": "object", "additionalProperties": _CHANGES},
                    "grades": {
                        "type": "object",
                        "required": ["hayashi", "gags"],
                        "properties": {"hayashi": _GRADE, "gags": _GRADE},
                    },
                    "responder": {"type": "object", "additionalProperties": {"type": ["boolean", "null"]}},
                    "counted_in_baseline_frame": {"type": "boolean"},
                    "secondary": {
                        "type": "object",
                        "required": ["shown", "reason"],
                        "properties": {"shown": {"type": "boolean"}, "reason": {"type": ["string", "null"]}},
                    },
                },
            },
        },
        "durability": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["class", "counts", "days", "percent_change", "nadir_index", "rebound", "hint"],
                    "properties": {
                        "counts": {"type": "array", "minItems": 3, "items": {"type": "integer", "minimum": 0}},
                        "rebound": {"type": "boolean"},
                        "rebound_index": {"type": ["integer", "null"]},
                        "hint": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
}
