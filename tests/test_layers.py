"""The package's layers, checked from the source: core <- {evaluate, compare, batch, train} <- report <- web <- cli.

(``cli`` sits on top of ``web`` because ``lesioncount serve`` starts the web app.)

Every ``lesioncount`` import (module level or inside a function) is read with ``ast``. A module may import
from its own layer's package or from a lower layer, never from a higher one or from a sibling package of
the same layer; and the packages' import graph has no cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lesioncount"

#: Layer of each part of the package (the core is every top-level module not named here).
LAYERS = {"evaluate": 1, "compare": 1, "batch": 1, "train": 1, "report": 2, "web": 3, "cli": 4, "demo": 4}
#: Known upward imports, each with the issue that removes it (keep this list short, and shrinking).
ALLOWED: set[tuple[str, str]] = set()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "core"


def _layer(part: str) -> int:
    return LAYERS.get(part, 0)


def _imports() -> list[tuple[str, str, int]]:
    out = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            out += [(module, n, node.lineno) for n in names if n == "lesioncount" or n.startswith("lesioncount.")]
    return out


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for module, target, line in _imports():
        src, dst = _part(module), _part(target)
        if target == "lesioncount" or src == dst or (src, dst) in ALLOWED:
            continue
        if _layer(dst) > _layer(src) or (_layer(dst) == _layer(src) and _layer(src) > 0):
            bad.append(f"{module}:{line} imports {target} ({src} layer {_layer(src)} -> {dst} layer {_layer(dst)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_package_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for module, target, _ in _imports():
        src, dst = _part(module), _part(target)
        if src != dst and _layer(src) > 0 and _layer(dst) > 0:
            graph.setdefault(src, set()).add(dst)

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in graph.get(a, ()))

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert not cycles, cycles


@pytest.mark.parametrize("module", ["lesioncount.endpoints", "lesioncount.pipeline", "lesioncount.matching"])
def test_core_modules_import_alone(module: str) -> None:
    """Core modules stay light: no compare, batch or report package, no scipy, pandas or torch on import."""
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('lesioncount.compare', 'lesioncount.batch', 'lesioncount.report', 'scipy', "
        "'pandas', 'torch') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-1000:]
