"""`lesioncount create-admin` and `lesioncount serve` (argument parsing; the server itself runs in tests/e2e)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from lesioncount.cli import build_parser, main  # noqa: E402


def test_create_admin_then_log_in(tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from lesioncount.web import Settings, create_app
    from lesioncount.web.testing import login

    monkeypatch.setenv("LESIONCOUNT_ADMIN_PASSWORD", "first admin pw")
    args = ["create-admin", "--data-dir", str(tmp_path), "--clinic", "North", "--username", "root"]
    assert main(args) == 0
    assert "created admin 'root'" in capsys.readouterr().out
    assert main(args) == 2
    assert "this clinic already has a user" in capsys.readouterr().err
    monkeypatch.setenv("LESIONCOUNT_ADMIN_PASSWORD", "short")
    assert main([*args[:-1], "other"]) == 2
    assert "8 characters" in capsys.readouterr().err

    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        login(c, "root", "first admin pw")
        assert c.get("/api/v1/me").json() == {"username": "root", "role": "admin", "clinic": "North", "via": "session"}


def test_serve_arguments(tmp_path):
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--port", "9000", "--max-upload-mb", "5"])
    assert args.port == 9000 and args.max_upload_mb == 5.0 and args.host == "127.0.0.1" and callable(args.func)
