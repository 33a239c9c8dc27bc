from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_model import make_toy_model, red_blob

from lesioncount.cli import main
from lesioncount.commands import output_names


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx")


def _photo(path: Path, n: int) -> None:
    img = np.full((200, 260, 3), 170, np.uint8)
    for i in range(n):
        img = red_blob(img, 40 + 50 * i, 100, 3)
    Image.fromarray(img).save(path)


def test_count_writes_named_outputs_and_exits_0(toy: Path, tmp_path: Path) -> None:
    photos = tmp_path / "in"
    (photos / "sub").mkdir(parents=True)
    _photo(photos / "a.png", 2)
    _photo(photos / "sub" / "b.jpg", 3)
    out = tmp_path / "out"
    code = main(
        ["count", str(photos), "--out", str(out), "--overlay", "--model", str(toy), "--threads", "1", "--whole-frame"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.overlay.jpg",
        "b.json",
        "b.overlay.jpg",
        "summary.csv",
    ]
    assert json.loads((out / "a.json").read_text())["counts"]["inflammatory"] == 2
    assert json.loads((out / "b.json").read_text())["counts"]["inflammatory"] == 3
    with Image.open(out / "a.overlay.jpg") as overlay:
        assert overlay.size == (260, 200)


def test_failed_photo_is_listed_exit_1_and_others_kept(toy: Path, tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "good.png", 1)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    code = main(
        ["count", str(tmp_path / "bad.jpg"), str(tmp_path / "good.png"), "--out", str(out), "--model", str(toy)]
    )
    assert code == 1
    assert (out / "good.json").is_file() and not (out / "bad.json").exists()
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "1 photo(s) failed" in err


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "a.png", 1)
    code = main(["count", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "no.onnx")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_output_names_are_deduplicated() -> None:
    assert output_names([Path("x/a.jpg"), Path("y/a.png"), Path("z/b.jpg"), Path("A.tif")]) == ["a", "a-2", "b", "A-3"]


def test_a_subcommand_whose_extra_is_missing_says_what_to_install(monkeypatch, capsys) -> None:
    from lesioncount import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "serve", "lesioncount_no_such_module:add_cli")
    assert main(["serve", "--port", "8000"]) == 2
    err = capsys.readouterr().err
    assert "lesioncount_no_such_module" in err and "pip install 'lesioncount[web]'" in err
    assert "count" in cli.build_parser().format_help()  # the other subcommands still build
