"""Image reading/writing: exact round trips, mode conversions, and one-line SRErrors for bad files."""

import struct
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from sr_runtime.errors import SRError
from sr_runtime.images import collect_inputs, read_image, write_image

RNG = np.random.default_rng(2024)


def random_u8(height: int = 12, width: int = 17, channels: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


def random_u16(height: int = 12, width: int = 17, channels: int = 3) -> np.ndarray:
    values = RNG.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    values.flat[:4] = [0, 1, 65534, 65535]
    return values


def write_png16(path: Path, values: np.ndarray, **options) -> None:
    """Independent 16-bit PNG writer (pypng's own row interface)."""
    height, width, planes = values.shape
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16, **options)
    with path.open("wb") as file:
        writer.write(file, values.reshape(height, width * planes).tolist())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiff_rgb16(path: Path, values: np.ndarray) -> None:
    """A minimal uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    height, width, _ = values.shape
    short = lambda tag, value: struct.pack("<HHIHH", tag, 3, 1, value, 0)  # noqa: E731
    long_ = lambda tag, value: struct.pack("<HHII", tag, 4, 1, value)  # noqa: E731
    bits_offset = 8 + 2 + 10 * 12 + 4
    data_offset = bits_offset + 6
    entries = [
        short(256, width), short(257, height), struct.pack("<HHII", 258, 3, 3, bits_offset), short(259, 1),
        short(262, 2), long_(273, data_offset), short(277, 3), short(278, height),
        long_(279, values.nbytes), short(284, 1),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16)
                     + values.astype("<u2").tobytes())


def assert_one_line_error(path, needle: str) -> None:
    with pytest.raises(SRError) as err:
        read_image(path)
    message = str(err.value)
    assert "\n" not in message
    assert Path(path).name in message
    assert needle in message.lower()


# ---- round trips ----


def test_png8_round_trip(tmp_path):
    values = random_u8()
    target = tmp_path / "out.png"
    write_image(target, values.astype(np.float32) / 255)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), values)
    loaded = read_image(target)
    assert loaded.bit_depth == 8 and loaded.path == target
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == values.shape
    np.testing.assert_array_equal(loaded.pixels, values.astype(np.float32) / np.float32(255))


def test_png8_quantisation_rounds_and_clips(tmp_path):
    pixels = np.array([[[-0.1, 0.0, 1.0], [1.2, 0.5, 2.5 / 255], [3.5 / 255, 0.1, 0.999]]], np.float32)
    target = tmp_path / "q.png"
    write_image(target, pixels)
    expected = np.clip(np.rint(pixels * np.float32(255)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(target)), expected)
    assert expected[0, 1, 2] == 2 and expected[0, 2, 0] == 4  # half to even, like np.rint / skimage


def test_png16_round_trip_is_exact(tmp_path):
    values = random_u16()
    target = tmp_path / "deep" / "nested" / "out.png"
    write_image(target, values.astype(np.float32) / np.float32(65535), bit_depth=16)
    with target.open("rb") as file:  # read back independently of read_image
        _, _, rows, info = png.Reader(file=file).read()
        stored = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(values.shape)
    assert info["bitdepth"] == 16 and info["planes"] == 3
    np.testing.assert_array_equal(stored, values)
    loaded = read_image(target)
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(np.rint(loaded.pixels.astype(np.float64) * 65535).astype(np.uint16), values)


def test_npy_round_trip(tmp_path):
    pixels = RNG.random((9, 11, 3), dtype=np.float32)
    target = tmp_path / "out.npy"
    write_image(target, pixels)
    saved = np.load(target)
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, pixels)


@pytest.mark.parametrize(("suffix", "options"), [(".bmp", {}), (".tif", {}), (".webp", {"lossless": True})])
def test_other_8bit_formats_read_exactly(tmp_path, suffix, options):
    values = random_u8()
    target = tmp_path / f"in{suffix}"
    Image.fromarray(values).save(target, **options)
    loaded = read_image(target)
    assert loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels, values / np.float32(255))


def test_jpeg_reads_like_pillow_decodes(tmp_path):
    target = tmp_path / "in.jpg"
    Image.fromarray(random_u8(16, 16)).save(target, quality=90)
    np.testing.assert_array_equal(read_image(target).pixels, np.asarray(Image.open(target)) / np.float32(255))


# ---- 16-bit inputs ----


def test_png16_rgb_from_pypng_is_read_at_full_precision(tmp_path):
    values = random_u16()
    target = tmp_path / "rgb16.png"
    write_png16(target, values)
    loaded = read_image(target)
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels, values / np.float32(65535))
    # The low byte matters: values 1 apart must stay apart.
    assert loaded.pixels.flat[1] > loaded.pixels.flat[0]


def test_png16_gray_is_replicated(tmp_path):
    values = random_u16(channels=1)
    target = tmp_path / "gray16.png"
    write_png16(target, values)
    loaded = read_image(target)
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (12, 17, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded.pixels[:, :, channel], values[:, :, 0] / np.float32(65535))


def test_png16_opaque_alpha_is_dropped(tmp_path):
    values = random_u16(channels=4)
    values[:, :, 3] = 65535
    target = tmp_path / "rgba16.png"
    write_png16(target, values)
    np.testing.assert_array_equal(read_image(target).pixels, values[:, :, :3] / np.float32(65535))


def test_png16_transparency_is_refused(tmp_path):
    values = random_u16(channels=4)
    values[:, :, 3] = 65535
    values[3, 4, 3] = 65534
    write_png16(tmp_path / "rgba16.png", values)
    assert_one_line_error(tmp_path / "rgba16.png", "transparen")
    gray = random_u16(channels=1)
    write_png16(tmp_path / "key16.png", gray, transparent=(int(gray[2, 2, 0]),))
    assert_one_line_error(tmp_path / "key16.png", "transparen")


def test_tiff16_gray_is_read_at_full_precision(tmp_path):
    values = random_u16(channels=1)[:, :, 0]
    target = tmp_path / "gray16.tif"
    Image.fromarray(values).save(target)
    loaded = read_image(target)
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], values / np.float32(65535))


def test_tiff16_rgb_is_refused_rather_than_truncated(tmp_path):
    target = tmp_path / "rgb16.tif"
    tiff_rgb16(target, random_u16(4, 5))
    assert_one_line_error(target, "16-bit")


def test_other_deep_or_exotic_pixel_formats_are_refused(tmp_path):
    Image.fromarray(RNG.random((4, 5), dtype=np.float32)).save(tmp_path / "float.tif")
    assert_one_line_error(tmp_path / "float.tif", "32-bit")
    Image.new("LAB", (4, 5)).save(tmp_path / "lab.tif")
    assert_one_line_error(tmp_path / "lab.tif", "not supported")


# ---- mode conversions ----


def test_gray8_is_replicated(tmp_path):
    values = random_u8(channels=1)[:, :, 0]
    Image.fromarray(values, mode="L").save(tmp_path / "gray.png")
    pixels = read_image(tmp_path / "gray.png").pixels
    np.testing.assert_array_equal(pixels, np.repeat(values[:, :, None], 3, axis=2) / np.float32(255))


def test_palette_is_converted_to_rgb(tmp_path):
    colours = random_u8(1, 16)[0]
    indices = RNG.integers(0, 16, (10, 13), dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(colours.tobytes())
    image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png").pixels, colours[indices] / np.float32(255))


def test_palette_with_transparent_entry_is_refused(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    image.putpalette(bytes(range(6)))
    image.save(tmp_path / "palette.png", transparency=1)
    assert_one_line_error(tmp_path / "palette.png", "flatten")


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_opaque_alpha_is_dropped(tmp_path, mode):
    values = random_u8(channels=len(mode))
    values[:, :, -1] = 255
    Image.fromarray(values, mode=mode).save(tmp_path / "alpha.png")
    colour = values[:, :, :3] if mode == "RGBA" else np.repeat(values[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png").pixels, colour / np.float32(255))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_alpha_is_refused(tmp_path, mode):
    values = random_u8(channels=len(mode))
    values[:, :, -1] = 255
    values[5, 6, -1] = 0
    Image.fromarray(values, mode=mode).save(tmp_path / "alpha.png")
    assert_one_line_error(tmp_path / "alpha.png", "transparen")


def test_rgb_colour_key_transparency_is_refused(tmp_path):
    values = random_u8()
    Image.fromarray(values).save(tmp_path / "key.png", transparency=tuple(int(v) for v in values[1, 1]))
    assert_one_line_error(tmp_path / "key.png", "transparen")


# ---- bad inputs ----


def test_missing_empty_and_folder_paths(tmp_path):
    assert_one_line_error(tmp_path / "missing.png", "no such file")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_one_line_error(tmp_path / "empty.png", "empty")
    (tmp_path / "folder.png").mkdir()
    assert_one_line_error(tmp_path / "folder.png", "not a file")


def test_corrupt_and_truncated_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"definitely not an image\n" * 10)
    assert_one_line_error(tmp_path / "junk.png", "cannot be read")
    (tmp_path / "junk.jpg").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert_one_line_error(tmp_path / "junk.jpg", "cannot be read")
    for name, depth in (("full8.png", 8), ("full16.png", 16)):
        if depth == 8:
            Image.fromarray(random_u8(64, 64)).save(tmp_path / name)
        else:
            write_png16(tmp_path / name, random_u16(64, 64))
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut{depth}.png").write_bytes(data[: len(data) // 2])
        assert_one_line_error(tmp_path / f"cut{depth}.png", "cannot be read")
    Image.fromarray(random_u8(64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert_one_line_error(tmp_path / "cut.jpg", "cannot be read")


def test_zero_size_png_is_refused(tmp_path):
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\x00" * 5)) + png_chunk(b"IEND", b"")
    (tmp_path / "zero.png").write_bytes(data)
    assert_one_line_error(tmp_path / "zero.png", "zero size")


# ---- writing errors and atomicity ----


def test_write_rejects_bad_requests(tmp_path):
    pixels = np.zeros((4, 4, 3), np.float32)
    for target, kwargs, needle in [
        (tmp_path / "out.jpg", {}, ".jpg"),
        (tmp_path / "out", {}, "suffix"),
        (tmp_path / "out.png", {"bit_depth": 12}, "bit depth"),
    ]:
        with pytest.raises(SRError, match=needle):
            write_image(target, pixels, **kwargs)
    with pytest.raises(SRError, match="shape"):
        write_image(tmp_path / "out.png", np.zeros((4, 4), np.float32))
    with pytest.raises(SRError, match="NaN"):
        write_image(tmp_path / "out.png", np.full((4, 4, 3), np.nan, np.float32))
    (tmp_path / "a_file").write_bytes(b"x")
    with pytest.raises(SRError) as err:
        write_image(tmp_path / "a_file" / "out.png", pixels)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_write_replaces_existing_file_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")
    write_image(target, np.ones((3, 5, 3), np.float32))
    np.testing.assert_array_equal(np.asarray(Image.open(target)), np.full((3, 5, 3), 255, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


# ---- collecting inputs ----


def test_collect_inputs_from_folder_and_files(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "c.webp", ".hidden.png", "notes.txt", "sub/d.png"):
        (folder / name).write_bytes(b"x")
    single = tmp_path / "single.tiff"
    single.write_bytes(b"x")
    found = collect_inputs([folder])
    assert found.images == [folder / "a.JPG", folder / "b.png", folder / "c.webp"]
    assert found.skipped == [folder / "notes.txt"]  # reported, not silently ignored
    assert collect_inputs([str(single), folder, folder / "b.png"]).images == [
        single, folder / "a.JPG", folder / "b.png", folder / "c.webp"
    ]


def test_collect_inputs_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_bytes(b"x")
    for inputs, needle in [
        ([tmp_path / "missing"], "no such file"),
        ([tmp_path / "empty"], "no image files"),
        ([], "no image files"),
        ([tmp_path / "notes.txt"], "not a supported image type"),
    ]:
        with pytest.raises(SRError, match=needle) as err:
            collect_inputs(inputs)
        assert "\n" not in str(err.value)


def test_write_without_replace_keeps_an_existing_file(tmp_path):
    from sr_runtime.images import OutputExists

    target = tmp_path / "out.png"
    target.write_bytes(b"mine")
    with pytest.raises(OutputExists, match="exists; pass --overwrite"):
        write_image(target, np.zeros((4, 4, 3), np.float32), replace=False)
    assert target.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    write_image(tmp_path / "new.png", np.zeros((4, 4, 3), np.float32), replace=False)
    assert read_image(tmp_path / "new.png").pixels.shape == (4, 4, 3)
