"""`pipeline upscale IN_DIR OUT_DIR`: every image, bad files reported and skipped, existing outputs kept, resumable."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.evaluate import bicubic_upscaler
from pipeline.photo_writer import OutputFormat
from pipeline.upscale_folder import upscale_folder


@pytest.fixture
def folder(tmp_path):
    """in/: two photos, a truncated JPEG, a text file, a hidden file, and one photo in a subfolder."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "a.png")
    Image.fromarray(rgb).save(src / "b.jpg")
    Image.fromarray(rgb).save(src / "sub" / "c.png")
    (src / "bad.jpg").write_bytes((src / "b.jpg").read_bytes()[:300])
    (src / "notes.txt").write_text("not an image")
    Image.fromarray(rgb).save(src / ".hidden.png")
    return src


def _run(src, dst, upscaler=None, **options):
    return upscale_folder(upscaler or bicubic_upscaler(2), src, dst, 2, 8, 2, progress=False, **options)


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_folder_reports_bad_files_skips_existing_and_resumes(folder, tmp_path):
    out = tmp_path / "out"
    report = _run(folder, out)
    assert [str(p) for p in report.done] == ["a.png", "b.jpg"]
    assert [(str(p), "truncated" in reason.lower()) for p, reason in report.failed] == [("bad.jpg", True)]
    assert report.skipped == [] and report.ignored == 1
    assert _tree(out) == ["a.png", "b.png"]
    with Image.open(out / "a.png") as im:
        assert im.size == (24, 20)

    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    report = _run(folder, out, recursive=True)
    assert [str(p) for p in report.done] == ["sub/c.png"] and len(report.skipped) == 2 and len(report.failed) == 1
    assert {p: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == stamps  # existing outputs untouched
    assert _tree(out) == ["a.png", "b.png", "sub/c.png"]

    report = _run(folder, out, recursive=True, force=True, fmt=OutputFormat.WEBP)
    assert len(report.done) == 3 and report.skipped == []
    assert _tree(out) == ["a.png", "a.webp", "b.png", "b.webp", "sub/c.png", "sub/c.webp"]
    assert report.summary().startswith("done 3, skipped 0 (output exists; --force redoes them), failed 1, "
                                       "ignored 1 non-image files, ")


def test_ctrl_c_stops_the_batch_cleanly_and_a_rerun_resumes(folder, tmp_path):
    calls = []

    def interrupted_on_second_image(tile):
        calls.append(tile)
        if len(calls) > 4:  # a 10x12 image is 4 tiles of 8 px
            raise KeyboardInterrupt
        return bicubic_upscaler(2)(tile)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(folder, out, upscaler=interrupted_on_second_image)
    assert [p.name for p in out.iterdir()] == ["a.png"]  # b's partial file removed
    report = _run(folder, out)
    assert [str(p) for p in report.done] == ["b.jpg"] and [str(p) for p in report.skipped] == ["a.png"]


def test_inputs_that_would_share_an_output_fail_instead_of_overwriting(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (6, 6), (255, 0, 0)).save(src / "x.jpg")
    Image.new("RGB", (6, 6), (0, 0, 255)).save(src / "x.png")
    report = _run(src, tmp_path / "out")
    assert [str(p) for p in report.done] == ["x.jpg"]
    assert report.failed == [(report.failed[0][0], "same output x.png as x.jpg; rename one of them")]


def test_output_folder_inside_the_input_is_not_read_back(folder):
    report = _run(folder, folder / "up", recursive=True)
    assert [str(p) for p in report.done] == ["a.png", "b.jpg", "sub/c.png"]
    again = _run(folder, folder / "up", recursive=True)
    assert again.done == [] and len(again.skipped) == 3


def test_cli_folder_summary_failures_and_exit_status(folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (1, 1)).save(out / name)  # already done: only bad.jpg is left, and it fails
    assert main(["upscale", str(folder), str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "done 0, skipped 2 (output exists; --force redoes them), failed 1, ignored 1 non-image files" in captured.out
    assert "failed bad.jpg: cannot read image " in captured.err
    assert main(["upscale", str(folder), str(folder), "--quiet"]) == 2
    assert "is the input folder" in capsys.readouterr().err
    assert main(["upscale", str(folder / "a.png"), str(tmp_path / "a.png"), "--force"]) == 2
    assert "apply to an input folder" in capsys.readouterr().err
    assert main(["upscale", str(folder), str(out), "--format", "png", "--quality", "80"]) == 2
    assert "--quality applies to JPEG and WebP" in capsys.readouterr().err
