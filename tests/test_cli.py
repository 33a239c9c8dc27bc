from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_model import make_toy_model, red_blob

from lesioncount.cli import main


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
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a.png.json",
        "a.png.overlay.jpg",
        "sub",
        "sub/b.jpg.json",
        "sub/b.jpg.overlay.jpg",
        "summary.csv",
    ]
    assert json.loads((out / "a.png.json").read_text())["counts"]["inflammatory"] == 2
    assert json.loads((out / "sub" / "b.jpg.json").read_text())["counts"]["inflammatory"] == 3
    with Image.open(out / "a.png.overlay.jpg") as overlay:
        assert overlay.size == (260, 200)


def test_failed_photo_is_listed_exit_1_and_others_kept(toy: Path, tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "good.png", 1)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    code = main(
        ["count", str(tmp_path / "bad.jpg"), str(tmp_path / "good.png"), "--out", str(out), "--model", str(toy)]
    )
    assert code == 1
    assert (out / "good.png.json").is_file() and not (out / "bad.jpg.json").exists()
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "1 photo(s) failed" in err
    assert err.count("bad.jpg") == 1  # the path once, not "path: path: reason"
    assert "bad.jpg" in (out / "failures.csv").read_text()


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "a.png", 1)
    code = main(["count", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "no.onnx")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a refused run leaves no empty output folder behind
    (tmp_path / "f").write_text("x")
    assert main(["count", str(tmp_path / "a.png"), "--out", str(tmp_path / "f")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_subcommand_whose_extra_is_missing_says_what_to_install(monkeypatch, capsys) -> None:
    from lesioncount import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "serve", "lesioncount_no_such_module:add_cli")
    assert main(["serve", "--port", "8000"]) == 2
    err = capsys.readouterr().err
    assert "lesioncount_no_such_module" in err and "pip install 'lesioncount[web]'" in err
    assert "count" in cli.build_parser().format_help()  # the other subcommands still build


def _summary(out: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        return {row["result"]: row for row in csv.DictReader(f)}


def _count(toy: Path, *args: str) -> int:
    return main(["count", *args, "--model", str(toy), "--threads", "1", "--whole-frame"])


def test_names_never_collide_and_do_not_depend_on_other_photos(toy: Path, tmp_path: Path) -> None:
    photos = tmp_path / "in"
    for rel, n in (("a/visit.jpg", 1), ("a/visit.png", 2), ("b/visit-2.jpg", 3), ("c/visit.jpg", 4)):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        _photo(photos / rel, n)
    out = tmp_path / "out"
    assert _count(toy, str(photos / "a"), "--out", str(out)) == 0
    first = (out / "visit.jpg.json").read_bytes()
    assert _count(toy, str(photos), "--out", str(tmp_path / "all")) == 0
    rows = _summary(tmp_path / "all")
    assert sorted(rows) == ["a/visit.jpg.json", "a/visit.png.json", "b/visit-2.jpg.json", "c/visit.jpg.json"]
    for rel, row in rows.items():
        assert Path(row["path"]).relative_to(photos).as_posix() == rel.removesuffix(".json")
        assert json.loads((tmp_path / "all" / rel).read_text())["image"]["path"] == row["path"]
    assert json.loads(first)["counts"]["inflammatory"] == 1
    # Two folder arguments that hold the same relative path are refused before anything is counted.
    assert _count(toy, str(photos / "a"), str(photos / "c"), "--out", str(tmp_path / "clash")) == 2
    assert not list((tmp_path / "clash").glob("*.json"))


def test_summary_rows_always_agree_with_the_jsons(toy: Path, tmp_path: Path, monkeypatch) -> None:
    """A run at another threshold, then a run killed part way: every summary row matches its JSON."""
    from lesioncount.cli import core as commands

    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(5):
        _photo(photos / f"p{i}.png", i + 1)
    out = tmp_path / "out"
    assert _count(toy, str(photos), "--out", str(out), "--threshold", "0.95") == 0
    (out / ".lc-0123.tmp").write_text("left by a killed run")

    def check_agreement() -> None:
        for rel, row in _summary(out).items():
            doc = json.loads((out / rel).read_text())
            assert int(row["total_acne"]) == doc["counts"]["total_acne"], rel
            assert json.loads(row["thresholds"]) == doc["model"]["thresholds"], rel
            assert row["acne_expected"] == ("" if doc["acne_expected"] is None else str(doc["acne_expected"]))
            assert row["acne_expert_marks"] == (str(len(doc["expert_marks"])) if doc["expert_marks"] else "")

    real_write = commands.write_json
    calls = []

    def write_then_die(path: Path, obj: object) -> None:
        check_agreement()  # the state a kill at this moment would leave
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands in for the kill after two photos
        real_write(path, obj)

    monkeypatch.setattr(commands, "write_json", write_then_die)
    assert _count(toy, str(photos), "--out", str(out)) == 130
    check_agreement()
    rows = _summary(out)
    assert len(rows) == 5 and sum(json.loads(r["thresholds"])["inflammatory"] == 0.95 for r in rows.values()) == 3
    assert not (out / ".lc-0123.tmp").exists()


@pytest.mark.parametrize("case", ["out-is-a-file", "out-under-a-file"])
def test_unusable_out_is_one_line_before_counting(toy: Path, tmp_path: Path, capsys, case: str) -> None:
    _photo(tmp_path / "a.png", 1)
    (tmp_path / "f").write_text("a file")
    out = tmp_path / "f" if case == "out-is-a-file" else tmp_path / "f" / "sub"
    assert _count(toy, str(tmp_path / "a.png"), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err


def test_full_disk_stops_with_one_line_and_keeps_what_is_written(
    toy: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import errno

    from lesioncount.cli import core as commands

    for i in range(4):
        _photo(tmp_path / f"p{i}.png", 1)
    real_write = commands.write_json
    calls = []

    def fill_up(path: Path, obj: object) -> None:
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, obj)

    monkeypatch.setattr(commands, "write_json", fill_up)
    out = tmp_path / "out"
    assert _count(toy, *(str(tmp_path / f"p{i}.png") for i in range(4)), "--out", str(out)) == 1
    assert len(calls) == 3  # it stopped at the first full-disk error
    assert sorted(_summary(out)) == ["p0.png.json", "p1.png.json"]
    err = capsys.readouterr().err
    assert "No space left on device" in err and "stopped after 2" in err and "Traceback" not in err


def test_odd_file_names_do_not_break_the_summary_or_the_messages(toy: Path, tmp_path: Path, capsys) -> None:
    import os

    photos = tmp_path / "in"
    photos.mkdir()
    _photo(photos / os.fsdecode(b"caf\xe9.png"), 1)  # not UTF-8 (Latin-1 bytes)
    _photo(photos / ("y" * 245 + ".png"), 2)
    (photos / "two\nlines.jpg").write_text("not a photo")
    (photos / "[red]markup.jpg").write_text("not a photo")
    out = tmp_path / "out"
    assert _count(toy, str(photos), "--out", str(out)) == 1
    rows = _summary(out)
    assert len(rows) == 2 and any("caf\\xe9" in r for r in rows)
    err = capsys.readouterr().err
    assert "two\\nlines.jpg" in err and "[red]markup.jpg" in err


def test_outputs_inside_the_input_folder_are_not_counted_again(toy: Path, tmp_path: Path, capsys) -> None:
    _photo(tmp_path / "a.png", 1)
    (tmp_path / "c.gif").write_bytes(b"GIF89a")
    out = tmp_path / "out"
    assert main(["count", str(tmp_path), "--out", str(out), "--overlay", "--model", str(toy), "--whole-frame"]) == 0
    capsys.readouterr()
    assert main(["count", str(tmp_path), "--out", str(tmp_path / "out2"), "--model", str(toy), "--whole-frame"]) == 0
    assert sorted(_summary(tmp_path / "out2")) == ["a.png.json"]
    err = capsys.readouterr().err
    assert "unsupported format (.gif)" in err


def test_summary_row_carries_the_expected_count_and_the_expert_style_marks() -> None:
    from lesioncount.results import SUMMARY_COLUMNS, _row

    doc = {"counts": {"total_acne": 14}, "acne_expected": 13.6, "expert_marks": [{"class": "acne"}] * 5}
    row = dict(zip(SUMMARY_COLUMNS, _row("a.json", doc), strict=True))
    assert (row["total_acne"], row["acne_expected"], row["acne_expert_marks"]) == (14, 13.6, 5)
    bare = dict(zip(SUMMARY_COLUMNS, _row("b.json", {"counts": {"total_acne": 2}}), strict=True))
    assert (bare["acne_expected"], bare["acne_expert_marks"]) == ("", "")
