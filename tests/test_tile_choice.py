"""Tile size by measurement: the fastest of an artifact's sizes for a photo, within a memory cap."""

from __future__ import annotations

import pytest
from conftest import write_wave_images

from pipeline.evaluate import bicubic_upscaler
from pipeline.tile_choice import TileSizes, choose_tile, measured_threads
from pipeline.upscale import UpscaleConfig, upscale_file
from srcore.tiling import default_overlap

# Invented speeds with round numbers: ms per tile and peak MB of a process running that size.
SPEEDS = {"64": {"median_ms": 80.0, "peak_rss_mb": 500.0}, "128": {"median_ms": 300.0, "peak_rss_mb": 600.0},
          "192": {"median_ms": 650.0, "peak_rss_mb": 700.0}}
PHOTO_MB = {64: 60.0, 128: 120.0, 192: 180.0}.__getitem__  # what the photo adds per tile side (invented)


def test_the_fastest_size_for_the_photo_wins_and_its_numbers_are_the_plan_times_the_measurement():
    """2000x1500 LR, x4, overlap 16: 42x31 tiles of 64, 18x14 of 128, 12x9 of 192 (counted by hand)."""
    chosen, options = choose_tile(SPEEDS, 1500, 2000, 4, 1024, PHOTO_MB)
    assert [(o.tile, o.overlap, o.tiles) for o in options] == [(64, 16, 1302), (128, 16, 252), (192, 16, 108)]
    assert [o.seconds for o in options] == pytest.approx([1302 * 0.08, 252 * 0.3, 108 * 0.65])
    assert [o.memory_mb for o in options] == [500 + 60, 600 + 120, 700 + 180]
    assert chosen.tile == 192 and all(o.fits for o in options)


def test_the_memory_cap_rules_out_the_big_tiles_and_nothing_fitting_is_an_error():
    chosen, options = choose_tile(SPEEDS, 1500, 2000, 4, 800, PHOTO_MB)
    assert chosen.tile == 128 and [o.fits for o in options] == [True, True, False]
    chosen, _ = choose_tile(SPEEDS, 1500, 2000, 4, 800, lambda tile: PHOTO_MB(tile) + 150)  # a JPEG held whole
    assert chosen.tile == 64
    with pytest.raises(ValueError, match=r"no tile size fits --max-memory 500 MB: the smallest need is 560 MB"):
        choose_tile(SPEEDS, 1500, 2000, 4, 500, PHOTO_MB)


def test_a_small_photo_takes_the_size_that_wastes_least():
    """A 100x100 photo is one tile at 128 (padded) and 192 (more padding): 128 is faster than four 64s here."""
    chosen, options = choose_tile(SPEEDS, 100, 100, 4, 1024, PHOTO_MB)
    assert [o.tiles for o in options] == [4, 1, 1] and chosen.tile == 128


def test_thread_count_and_overlap_defaults():
    assert measured_threads({"threads_1": {}, "threads_2": {}, "how": ""}, None) == 2
    assert measured_threads({"threads_1": {}, "threads_2": {}}, 1) == 1
    assert measured_threads({"threads_1": {}, "threads_2": {}}, 4) == 2
    assert [default_overlap(t) for t in (16, 64, 96, 192)] == [4, 16, 16, 16]


def test_upscale_file_runs_only_the_chosen_size(tmp_path, caplog):
    """200x200: 16 tiles of 64 (1.28 s), 4 of 128 (1.2 s), 4 of 192 (2.6 s)."""
    photo = next(write_wave_images((tmp_path / "in").mkdir() or tmp_path / "in", 1, 200, 200).glob("*.png"))
    asked, plain = [], bicubic_upscaler(2)

    def upscaler_for(tile: int):
        asked.append(tile)
        return plain

    sizes = TileSizes(upscaler_for, SPEEDS, 64, "invented speeds")
    with caplog.at_level("INFO", logger="pipeline.upscale"):
        report = upscale_file(sizes, photo, tmp_path / "sr.png", 2, None, progress=False)
    assert asked == [128] and report.tile == 128 and report.overlap == 16 and report.tiles == 4
    assert "tile 128 px, the fastest of the artifact's sizes within --max-memory 1024 MB (invented speeds)" in caplog.text
    report = upscale_file(sizes, photo, tmp_path / "sr.png", 2, 64, progress=False, config=UpscaleConfig())
    assert asked == [128, 64] and report.tile == 64 and report.tiles == 16
    unmeasured = TileSizes(upscaler_for, None, 64)
    assert upscale_file(unmeasured, photo, tmp_path / "sr.png", 2, None, progress=False).tile == 64
    with pytest.raises(ValueError, match="a tile side is needed"):
        upscale_file(plain, photo, tmp_path / "sr.png", 2, None, progress=False)


WORKERS = {2: {"64": {"median_ms": 70.0, "peak_rss_mb": 700.0}, "128": {"median_ms": 280.0, "peak_rss_mb": 800.0}}}


def test_worker_processes_are_an_option_whose_tile_time_overlaps_the_writing():
    """Tiles in this process wait for the blending and encoding (here 0.1 s per SR MP, 48 MP: 4.8 s); beside
    worker processes the longer of the two counts."""
    chosen, options = choose_tile(SPEEDS, 1500, 2000, 4, 1024, PHOTO_MB, worker_speeds=WORKERS,
                                  writing_s_per_mp=0.1)
    assert [(o.tile, o.workers) for o in options] == [(64, 1), (128, 1), (192, 1), (64, 2), (128, 2)]
    assert [o.seconds for o in options] == pytest.approx([1302 * 0.08 + 4.8, 252 * 0.3 + 4.8, 108 * 0.65 + 4.8,
                                                          1302 * 0.07, 252 * 0.28])
    assert (chosen.tile, chosen.workers) == (128, 2) and "128 px, 2 processes of 1 thread" in chosen.describe()
    chosen, options = choose_tile(SPEEDS, 1500, 2000, 4, 1024, PHOTO_MB, worker_speeds=WORKERS, tile=192,
                                  writing_s_per_mp=0.1)  # --tile: the ways to run that size only
    assert [(o.tile, o.workers) for o in options] == [(192, 1)] and chosen.tile == 192
    slow = {2: {"128": {"median_ms": 280.0, "peak_rss_mb": 800.0}}}
    chosen, _ = choose_tile(SPEEDS, 1500, 2000, 4, 1024, PHOTO_MB, worker_speeds=slow, tile=128,
                            writing_s_per_mp=2.0)  # writing 96 s, longer than the tiles: it sets the time
    assert chosen.workers == 2 and chosen.seconds == pytest.approx(96.0)
    chosen, _ = choose_tile(SPEEDS, 1500, 2000, 4, 850, PHOTO_MB, worker_speeds=WORKERS, tile=128)
    assert chosen.workers == 1  # the workers' 800 MB plus the photo's 120 exceed the cap
    starting = {2: {"128": {"median_ms": 280.0, "peak_rss_mb": 800.0, "start_s": 3.0}}}
    chosen, options = choose_tile(SPEEDS, 100, 100, 4, 1024, PHOTO_MB, worker_speeds=starting, tile=128)
    assert [o.seconds for o in options] == pytest.approx([0.3, 3.28]) and chosen.workers == 1  # one tile: start-up wins
