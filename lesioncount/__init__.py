"""lesioncount: find, classify and count acne lesions and scars in facial photos, on a CPU.

The public one-call API is ``count_lesions``; ``LesionCounter`` reuses one loaded model for many photos.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CountResult", "Lesion", "LesionCounter", "count_lesions", "__version__"]

if TYPE_CHECKING:
    from lesioncount.pipeline import LesionCounter, count_lesions
    from lesioncount.types import CountResult, Lesion


def __getattr__(name: str) -> Any:
    # Lazy: `import lesioncount` stays cheap (no ONNX Runtime) for the CLI's --help and for helpers.
    if name in ("LesionCounter", "count_lesions"):
        from lesioncount import pipeline

        return getattr(pipeline, name)
    if name in ("CountResult", "Lesion"):
        from lesioncount import types

        return getattr(types, name)
    raise AttributeError(f"module 'lesioncount' has no attribute {name!r}")
