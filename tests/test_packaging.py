"""The extras are complete: each entry point imports with only the packages its extra declares."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Import names of the packages that only other extras bring (pip name -> import name where they differ).
_IMPORT_NAMES = {
    "scikit-image": "skimage",
    "opencv-python-headless": "cv2",
    "pyyaml": "yaml",
    "dask[distributed]": "dask",
}


def _names(requirements: list[str]) -> set[str]:
    out = set()
    for req in requirements:
        name = req.split(";")[0].strip()
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        out.add(_IMPORT_NAMES.get(name, name).replace("-", "_").lower())
    return out


def _blocked_for(extra: str) -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = _names(meta["dependencies"]) | _names(meta["optional-dependencies"][extra])
    others = set().union(*(_names(v) for k, v in meta["optional-dependencies"].items() if k not in ("all", extra)))
    return {m for m in others - allowed if not m.startswith("lesioncount")} | {"pandas", "torch", "dask"} - allowed


@pytest.mark.parametrize(
    ("extra", "module"),
    [("web", "lesioncount.web.app"), ("compare", "lesioncount.cli.compare"), ("eval", "lesioncount.cli.evaluate")],
)
def test_an_extra_alone_imports_its_entry_point(extra: str, module: str) -> None:
    blocked = sorted(_blocked_for(extra))
    code = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not in this extra)', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and "ok" in out.stdout, f"blocked {blocked}:\n{out.stderr[-2000:]}"
