"""`pipeline upscale`'s memory prediction against a real run: the photo's buffers must not exceed it.

Each case runs in a fresh process (the heap of earlier tests would blur the measurement), with a
nearest-neighbour upscaler so that only the photo's own buffers show: the LR image, the blending accumulators
of a 2000 px wide row of tiles at x4 (63 MB at 128 px), the output samples and the PNG encoder.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipeline.upscale import UNITEMIZED_MB, photo_memory_mb
from srcore.images import load_photo

RUN = """
import json, sys, threading, time
import torch, torch.nn.functional as F
from pipeline.upscale import UpscaleConfig, upscale_file

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

src, dst, tile, bit_depth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
base, peak, done = rss_mb(), [0.0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.001)

sampler = threading.Thread(target=sample)
sampler.start()
with torch.inference_mode():
    upscale_file(lambda x: F.interpolate(x, scale_factor=4, mode="nearest"), src, dst, 4, tile, progress=False,
                 config=UpscaleConfig(bit_depth=bit_depth))
done.set()
sampler.join()
print(json.dumps({"added_mb": peak[0] - base}))
"""


def _photo(path, mode: str) -> None:
    """A smooth 2000x300 image (the PNG encoder's speed and memory do not depend on the content much)."""
    y, x = np.mgrid[0:300, 0:2000]
    planes = [(x * 255 // 1999), (y * 255 // 299), ((x + y) % 256), np.full_like(x, 200)]
    pixels = np.stack(planes[: len(mode)], axis=2).astype(np.uint8)
    Image.fromarray(pixels.squeeze(2) if len(mode) == 1 else pixels, mode).save(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize(("mode", "tile", "bit_depth"), [("RGB", 128, 8), ("RGB", 64, 8), ("LA", 128, 16)])
def test_a_photo_adds_no_more_memory_than_predicted(tmp_path, mode, tile, bit_depth):
    src = tmp_path / "photo.png"
    _photo(src, mode)
    got = subprocess.run([sys.executable, "-c", RUN, str(src), str(tmp_path / "sr.png"), str(tile), str(bit_depth)],
                         capture_output=True, text=True, check=True)
    added = json.loads(got.stdout.splitlines()[-1])["added_mb"]
    predicted = photo_memory_mb(load_photo(src), 4, tile, bit_depth)
    itemized = predicted - UNITEMIZED_MB
    print(f"{mode} {tile} px {bit_depth}-bit: added {added:.0f} MB, itemized {itemized:.0f}, predicted {predicted:.0f}")
    assert added <= predicted
    assert added >= 0.8 * itemized  # the itemized buffers are really there: the prediction is not padding
