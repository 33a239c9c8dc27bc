"""End-to-end fixtures: the web app served by uvicorn in a thread, and Debian's Chromium driven by Playwright.

Browser tests are marked ``browser`` and skip, saying why, when /usr/bin/chromium or Playwright is missing
(``make browser`` installs Debian's chromium). Counting uses the shipped model when models/*.onnx exists,
else the fake counter.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MODELS = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.onnx"))
PASSWORD = "e2e password 123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (run `make browser`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _counter_factory():
    real = [m for m in MODELS if "int8" not in m.name] or MODELS
    if real:
        from lesioncount.pipeline import LesionCounter

        return lambda: LesionCounter(real[0], threads=1)
    from lesioncount.web.testing import FakeCounter

    return FakeCounter


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    import uvicorn

    from lesioncount.web import Settings, create_app
    from lesioncount.web.testing import add_user

    data = tmp_path_factory.mktemp("web-e2e")
    app = create_app(Settings(data_dir=data, counter_factory=_counter_factory()))
    add_user(app, "E2E Clinic", "doc", PASSWORD, "clinician")
    add_user(app, "E2E Clinic", "boss", PASSWORD, "admin")
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the web app did not start")
        time.sleep(0.05)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", app=app, data=data, real_model=bool(MODELS))
    srv.should_exit = True
    thread.join(10)
