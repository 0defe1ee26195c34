"""Tests for srcore.data: benchmark layouts, error handling and the seeded CropSampler."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from srcore.data import (
    CropSampler,
    DatasetError,
    ImagePair,
    dataset_name,
    list_images,
    load_benchmark,
)
from srcore.images import ImageReadError, load_rgb, save_rgb
from srcore.imresize import imresize


def _random_image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """HR-only folder: three images of odd sizes, one corrupt .png, one non-image file."""
    folder = tmp_path / "MySet"
    save_rgb(folder / "c.png", _random_image(30, 27, 0))
    save_rgb(folder / "a.png", _random_image(21, 33, 1))
    save_rgb(folder / "b.bmp", _random_image(16, 16, 2))
    (folder / "broken.PNG").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "readme.txt").write_text("not an image")
    return folder


# -- load_benchmark ----------------------------------------------------------------------------


def test_layout_a_set5_x4(data_dir: Path) -> None:
    folder = data_dir / "benchmark" / "Set5"
    pairs = load_benchmark(folder, 4)
    assert dataset_name(folder) == "Set5"
    assert [p.name for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    for pair in pairs:
        assert isinstance(pair, ImagePair)
        assert pair.lr.dtype == np.uint8 and pair.hr.dtype == np.uint8
        assert pair.lr.ndim == 3 and pair.lr.shape[2] == 3
        assert pair.hr.shape == (4 * pair.lr.shape[0], 4 * pair.lr.shape[1], 3)
        expected_lr = load_rgb(folder / "LR_bicubic" / "X4" / f"{pair.name}x4.png")
        np.testing.assert_array_equal(pair.lr, expected_lr)


def test_layout_a_missing_lr_scale_falls_back_to_generated(data_dir: Path, tmp_path: Path, caplog) -> None:
    """HR/ with LR_bicubic/ lacking X3: LR generated, identical to the shipped X3 files."""
    src = data_dir / "benchmark" / "Set5"
    folder = tmp_path / "Set5copy"
    for name in ("bird", "woman"):
        save_rgb(folder / "HR" / f"{name}.png", load_rgb(src / "HR" / f"{name}.png"))
    (folder / "LR_bicubic" / "X2").mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="srcore.data"):
        pairs = load_benchmark(folder, 3)
    assert "generated 2 LR image(s)" in caplog.text
    for pair in pairs:
        np.testing.assert_array_equal(pair.lr, load_rgb(src / "LR_bicubic" / "X3" / f"{pair.name}x3.png"))
        assert pair.hr.shape == (3 * pair.lr.shape[0], 3 * pair.lr.shape[1], 3)


def test_layout_b_skips_corrupt_with_warning(image_folder: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="srcore.data"):
        pairs = load_benchmark(image_folder, 2)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken.PNG" in warnings[0].getMessage()
    assert sum("generated 3 LR image(s)" in r.getMessage() for r in caplog.records) == 1
    by_name = {p.name: p for p in pairs}
    a = by_name["a"]
    assert a.hr.shape == (20, 32, 3) and a.lr.shape == (10, 16, 3)
    np.testing.assert_array_equal(a.hr, _random_image(21, 33, 1)[:20, :32])
    np.testing.assert_array_equal(a.lr, imresize(a.hr, 0.5))
    assert by_name["c"].lr.shape == (15, 13, 3)


def test_layout_b_raise_mode(image_folder: Path) -> None:
    with pytest.raises(ImageReadError, match="broken.PNG"):
        load_benchmark(image_folder, 2, on_error="raise")


def test_layout_b_hr_subfolder_without_lr(tmp_path: Path) -> None:
    save_rgb(tmp_path / "S" / "HR" / "x.png", _random_image(12, 12, 3))
    (pair,) = load_benchmark(tmp_path / "S", 4)
    assert pair.name == "x" and pair.lr.shape == (3, 3, 3) and pair.hr.shape == (12, 12, 3)


def test_errors_missing_empty_bad_scale(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_benchmark(tmp_path / "nope", 4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images"):
        load_benchmark(tmp_path / "empty", 4)
    for bad in (5, 1, 4.0, "4", True, None):
        with pytest.raises(DatasetError, match=r"scale must be one of the integers \(2, 3, 4\), got"):
            load_benchmark(image_folder, bad)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="on_error"):
        load_benchmark(image_folder, 2, on_error="ignore")  # type: ignore[arg-type]


def test_all_images_unusable(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        load_benchmark(folder, 2)


def test_tiny_images(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "tiny"
    save_rgb(folder / "one.png", _random_image(1, 1, 4))
    save_rgb(folder / "five.png", _random_image(5, 5, 5))
    with caplog.at_level(logging.WARNING, logger="srcore.data"):
        pairs = load_benchmark(folder, 4)
    assert [p.name for p in pairs] == ["five"]
    assert "1x1 px, smaller than the scale 4" in caplog.text and "one.png" in caplog.text
    with pytest.raises(DatasetError, match=r"one\.png is 1x1 px, smaller than the scale 4"):
        load_benchmark(folder, 4, on_error="raise")

    x2 = {p.name: p for p in load_benchmark(folder, 2)}
    assert set(x2) == {"five"}  # 1x1 is also < 2
    assert x2["five"].hr.shape == (4, 4, 3) and x2["five"].lr.shape == (2, 2, 3)


def test_list_images_sorted_case_insensitive(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "sub/c.webp", ".hidden.png", "d.gif"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.png", "b.JPG", "sub/c.webp"]


# -- CropSampler -------------------------------------------------------------------------------


@pytest.fixture
def sampler_dirs(tmp_path: Path) -> tuple[Path, Path]:
    hr = tmp_path / "hr"
    save_rgb(hr / "h1.png", _random_image(40, 50, 10))
    save_rgb(hr / "deep" / "h2.png", _random_image(36, 33, 11))
    save_rgb(hr / "small.png", _random_image(20, 20, 12))  # too small for a 32 px HR patch
    lr = tmp_path / "lr"
    save_rgb(lr / "l1.png", _random_image(20, 25, 13))
    return hr, lr


def test_sampler_reproducible_shapes_range(sampler_dirs: tuple[Path, Path]) -> None:
    hr, lr = sampler_dirs
    make = lambda seed: CropSampler(hr_folders=[hr], lr_folders=[lr], scale=4, lr_size=8, seed=seed)  # noqa: E731
    s0 = make(0)
    assert len(s0) == 3 and [p.name for p in s0.hr_files] == ["h2.png", "h1.png"]  # deep/h2 < h1
    a = s0.sample_lr(6)
    assert a.dtype == torch.float32 and a.shape == (6, 3, 8, 8)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    np.testing.assert_array_equal(make(0).sample_lr(6).numpy(), a.numpy())
    assert not torch.equal(make(1).sample_lr(6), a)
    lr_t, hr_t = s0.sample_pairs(3)
    assert lr_t.shape == (3, 3, 8, 8) and hr_t.shape == (3, 3, 32, 32) and hr_t.dtype == torch.float32


def test_sampler_pairs_match_imresize(sampler_dirs: tuple[Path, Path]) -> None:
    hr, _ = sampler_dirs
    sampler = CropSampler(hr_folders=hr, scale=4, lr_size=8, seed=3, augment=False)
    lr_t, hr_t = sampler.sample_pairs(5)
    for lr_one, hr_one in zip(lr_t, hr_t):
        hr_u8 = (hr_one.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lr_u8 = (lr_one.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(imresize(hr_u8, 0.25), lr_u8)
        # The HR patch is a real crop of one of the source images.
        sources = [load_rgb(p) for p in sampler.hr_files]
        assert any(_contains(src, hr_u8) for src in sources)


def _contains(image: np.ndarray, patch: np.ndarray) -> bool:
    p = patch.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(image, (p, p, 3))[:, :, 0]
    return bool((windows == patch).all(axis=(2, 3, 4)).any())


def test_sampler_augment_covers_dihedral_group(tmp_path: Path) -> None:
    save_rgb(tmp_path / "x.png", _random_image(8, 8, 20))
    sampler = CropSampler(lr_folders=tmp_path, lr_size=8, seed=0)
    seen = {sampler.sample_lr(1).numpy().tobytes() for _ in range(80)}
    assert len(seen) == 8  # whole image as the patch: only the transform varies


def test_sampler_state_resume(sampler_dirs: tuple[Path, Path]) -> None:
    hr, lr = sampler_dirs
    first = CropSampler(hr_folders=[hr], lr_folders=[lr], scale=4, lr_size=8, seed=7)
    first.sample_lr(4)
    state = first.state_dict()
    expected_lr = first.sample_lr(5)
    expected_pairs = first.sample_pairs(2)
    resumed = CropSampler(hr_folders=[hr], lr_folders=[lr], scale=4, lr_size=8, seed=123)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.sample_lr(5), expected_lr)
    got = resumed.sample_pairs(2)
    assert torch.equal(got[0], expected_pairs[0]) and torch.equal(got[1], expected_pairs[1])
    other = CropSampler(hr_folders=[hr], lr_folders=[lr], scale=2, lr_size=8, seed=0)
    with pytest.raises(ValueError, match="scale"):
        other.load_state_dict(state)


def test_sampler_errors_and_unreadable(tmp_path: Path, sampler_dirs: tuple[Path, Path], caplog) -> None:
    hr, lr = sampler_dirs
    with pytest.raises(DatasetError, match="at least one folder"):
        CropSampler()
    with pytest.raises(DatasetError, match="does not exist"):
        CropSampler(hr_folders=[tmp_path / "missing"])
    with pytest.raises(DatasetError, match="scale"):
        CropSampler(hr_folders=[hr], scale=8)
    with pytest.raises(DatasetError, match="lr_size"):
        CropSampler(hr_folders=[hr], lr_size=0)
    with pytest.raises(DatasetError, match="no usable image"):
        CropSampler(hr_folders=[hr], lr_size=64)
    with pytest.raises(DatasetError, match="only LR sources"):
        CropSampler(lr_folders=[lr], lr_size=8).sample_pairs(1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        CropSampler(lr_folders=[empty])

    # Corrupt header: skipped at listing. Truncated pixel data: skipped at first decode.
    mixed = tmp_path / "mixed"
    save_rgb(mixed / "good.png", _random_image(16, 16, 30))
    (mixed / "corrupt.png").write_bytes(b"nope")
    save_rgb(mixed / "trunc.png", _random_image(64, 64, 31))
    data = (mixed / "trunc.png").read_bytes()
    (mixed / "trunc.png").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="srcore.data"):
        sampler = CropSampler(lr_folders=[mixed], lr_size=8, seed=0)
        assert [p.name for p in sampler.lr_files] == ["good.png", "trunc.png"]
        batch = sampler.sample_lr(20)
        again = CropSampler(lr_folders=[mixed], lr_size=8, seed=0).sample_lr(20)
    assert batch.shape == (20, 3, 8, 8) and torch.equal(batch, again)
    assert "corrupt.png" in caplog.text and "trunc.png" in caplog.text


def test_sampler_on_shared_data(data_dir: Path) -> None:
    """LR source folder of the shared calibration set: patches come straight from the files."""
    sampler = CropSampler(lr_folders=[data_dir / "calib" / "DF2K_LR_bicubic" / "X4"], lr_size=16, seed=0)
    assert len(sampler) == 20
    batch = sampler.sample_lr(4)
    assert batch.shape == (4, 3, 16, 16) and batch.std() > 0.01
