"""Shared fixtures: small photos made on the fly, the shipped model, a session-wide counter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def counter():
    from lesioncount.pipeline import LesionCounter

    return LesionCounter(threads=1)


@pytest.fixture(scope="session")
def acne04() -> Path:
    path = SHARED_DATA / "acne04"
    if not path.is_dir():
        pytest.skip("../shared/data/acne04 is not present (real photos are not part of the project)")
    return path
