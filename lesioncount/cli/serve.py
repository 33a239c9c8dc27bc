"""``lesioncount serve`` (the clinic web app) and ``lesioncount create-admin`` (its first user)."""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys
from pathlib import Path
from typing import Any


def add_cli(sub: Any) -> None:
    """Add the ``serve`` and ``create-admin`` subcommands."""
    p = sub.add_parser("serve", help="run the clinic web app", description=serve.__doc__)
    _common(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0: the whole network)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    p.add_argument("--model", default=None, help="ONNX model (default: $LESIONCOUNT_MODEL or the shipped model)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument(
        "--max-upload-mb", type=float, default=40.0, help="largest photo accepted, in MB (default %(default)g)"
    )
    p.add_argument(
        "--max-megapixels", type=float, default=60.0, help="largest photo accepted, in megapixels (default %(default)g)"
    )
    p.add_argument("--secure-cookies", action="store_true", help="session cookie over HTTPS only (behind TLS)")
    p.set_defaults(func=serve)

    a = sub.add_parser("create-admin", help="create a clinic's admin user", description=create_admin.__doc__)
    _common(a)
    a.add_argument("--clinic", required=True, help="clinic name (created when new)")
    a.add_argument("--username", required=True)
    a.add_argument(
        "--password-env",
        default="LESIONCOUNT_ADMIN_PASSWORD",
        help="environment variable holding the password (asked for on the terminal when unset)",
    )
    a.set_defaults(func=create_admin)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LESIONCOUNT_DATA_DIR", "lesioncount-data")),
        help="photos and the SQLite database (default: $LESIONCOUNT_DATA_DIR or ./lesioncount-data)",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("LESIONCOUNT_DATABASE_URL"),
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in --data-dir)",
    )


def serve(args: argparse.Namespace) -> int:
    """Run the clinic web app (migrates the database first). Create the first user with create-admin."""
    import uvicorn

    from lesioncount.pipeline import LesionCounter
    from lesioncount.web import Settings, create_app

    settings = Settings(
        data_dir=args.data_dir,
        database_url=args.database_url,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_megapixels=args.max_megapixels,
        cookie_secure=args.secure_cookies,
        counter_factory=functools.partial(
            LesionCounter, args.model, threads=args.threads, max_megapixels=args.max_megapixels
        ),
    )
    app = create_app(settings)
    print(f"lesioncount: serving on http://{args.host}:{args.port} (data in {settings.data_dir})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return 0


def create_admin(args: argparse.Namespace) -> int:
    """Create an admin user for a clinic (and the clinic itself when new)."""
    from lesioncount.web import Settings
    from lesioncount.web.db import make_engine, make_sessionmaker, upgrade
    from lesioncount.web.services import Invalid, create_clinic_admin

    password = os.environ.get(args.password_env)
    if not password:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    settings = Settings(data_dir=args.data_dir, database_url=args.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    try:
        with make_sessionmaker(engine)() as db:
            user = create_clinic_admin(db, args.clinic, args.username, password)
            print(f"created admin {user.username!r} of clinic {args.clinic!r}")
    except Invalid as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0
