"""The memory an image will take, estimated before it starts, against what the loops really hold."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sr_runtime.crop_tiling import crop_cost, upscale_tiled
from sr_runtime.errors import SRError
from sr_runtime.families.invsr.image_loop import UpscaleSettings, image_cost, upscale_array
from sr_runtime.families.invsr.section import Geometry
from sr_runtime.images import write_image
from sr_runtime.resources import GIB, ImageCost, check_cost, memory_limit

GEOMETRY = Geometry(latent_channels=4, vae_factor=8, pad_multiple=16)


def _nearest_x4(tiles, *noises):
    return tiles.repeat(4, axis=2).repeat(4, axis=3)


def _peak(run) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("color_fix", [None, "wavelet", "ycbcr"])
@pytest.mark.parametrize(("height", "width", "tile"), [(230, 170, 32), (300, 410, 128)])
def test_the_invsr_estimate_covers_the_loops_peak_and_not_much_more(height, width, tile, color_fix):
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    settings = UpscaleSettings(tile=tile, batch=4, color_fix=color_fix)
    peak = _peak(lambda: upscale_array(image, _nearest_x4, settings, [1], GEOMETRY))
    cost = image_cost(height, width, tile, GEOMETRY, color_fix)
    assert peak <= cost.memory <= 1.5 * peak


def test_the_rrdbnet_estimate_covers_the_loops_peak_and_not_much_more():
    image = np.random.default_rng(0).random((260, 330, 3), dtype=np.float32)
    peak = _peak(lambda: upscale_tiled(image, _nearest_x4, 64, 8, 4))
    cost = crop_cost(260, 330, 64, 8)
    assert peak <= cost.memory <= 1.5 * peak and cost.tiles == 6 * 7


def test_writing_holds_one_scaled_copy(tmp_path):
    pixels = np.random.default_rng(1).random((400, 300, 3), dtype=np.float32)
    assert _peak(lambda: write_image(tmp_path / "o.png", pixels)) < 2.5 * pixels.nbytes


def test_the_limit_and_its_message():
    assert memory_limit(2.5) == int(2.5 * GIB)
    assert 0 < memory_limit(None)
    with pytest.raises(SRError, match=r"6000x6000 would need about 1.0 GiB of memory \(8,836 tiles\).*--max-memory"):
        check_cost(6000, 6000, ImageCost(GIB, 8836), GIB // 2)
