"""Settings of the clinic web app: one frozen dataclass, built from CLI flags or environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lesioncount.types import CountResult


class Counter(Protocol):
    """Anything that counts lesions in a photo file (``lesioncount.pipeline.LesionCounter`` in production)."""

    def count(self, image_or_path: str) -> CountResult: ...


def default_counter_factory() -> Counter:
    """The real model, loaded once on first use (the ONNX session is reused for every photo)."""
    from lesioncount.pipeline import LesionCounter

    return LesionCounter()


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs.

    Attributes:
        data_dir: folder for photo originals, served copies and the default SQLite database.
        database_url: SQLAlchemy URL; None means SQLite at ``data_dir/lesioncount.sqlite3``.
            PostgreSQL: ``postgresql+psycopg://user:pass@host/db``.
        max_upload_bytes: per-photo size cap.
        max_megapixels: per-photo decoded-size cap.
        max_files_per_upload: files one upload request may carry.
        session_ttl_s: idle time after which a login session ends.
        cookie_secure: send the session cookie over HTTPS only (set it behind TLS).
        count_workers: threads counting photos in the background.
        display_max_side_px: long side of the EXIF-free copy the browser is shown.
        counter_factory: builds the lesion counter on first use; tests inject a fake.
    """

    data_dir: Path
    database_url: str | None = None
    max_upload_bytes: int = 40_000_000
    max_megapixels: float = 60.0
    max_files_per_upload: int = 12
    session_ttl_s: int = 8 * 3600
    cookie_secure: bool = False
    count_workers: int = 1
    display_max_side_px: int = 2400
    counter_factory: Callable[[], Counter] = field(default=default_counter_factory, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.max_upload_bytes <= 0 or self.max_megapixels <= 0:
            raise ValueError("max_upload_bytes and max_megapixels must be positive")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lesioncount.sqlite3').resolve()}"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read ``LESIONCOUNT_DATA_DIR``, ``LESIONCOUNT_DATABASE_URL``; overrides win."""
        kw: dict[str, object] = {
            "data_dir": Path(os.environ.get("LESIONCOUNT_DATA_DIR", "lesioncount-data")),
            "database_url": os.environ.get("LESIONCOUNT_DATABASE_URL") or None,
        }
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)  # type: ignore[arg-type]
