"""Reading and writing images for the runtime (Pillow + pypng, no OpenCV).

Every problem with an input or output file becomes an ``SRError`` with a one-line message naming the
file, so the CLI can report it without a traceback. Pixels are (H, W, 3) float32 RGB in [0, 1].
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
from PIL import Image

from .errors import SRError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# What Pillow calls the formats behind those suffixes (MPO: multi-picture JPEGs from cameras).
_PILLOW_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "DIB", "TIFF", "WEBP"})
_PILLOW_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes with 8-bit samples that Pillow converts to RGB faithfully (32-bit "I"/"F", LAB, HSV are not).
_PILLOW_8BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # (H, W, 3) float32 in [0, 1]
    bit_depth: int  # 8 or 16
    path: Path


def _fail(path: Path, problem: object) -> SRError:
    """The error for ``path``; decoder messages can span lines, the CLI wants one."""
    return SRError(f"{path}: {' '.join(str(problem).split())}")


def _transparency_error(path: Path) -> SRError:
    return _fail(path, "has transparent pixels, which are not supported; flatten the image onto a background first")


def _to_unit_float(values: np.ndarray, max_value: int) -> np.ndarray:
    # float32 division, like the official reader's /255.
    return values.astype(np.float32) / np.float32(max_value)


def _as_rgb(channels: np.ndarray) -> np.ndarray:
    """(H, W, 1 or 3) -> contiguous (H, W, 3), gray replicated."""
    if channels.shape[2] == 1:
        channels = np.repeat(channels, 3, axis=2)
    return np.ascontiguousarray(channels)


def _check_size(path: Path, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise _fail(path, f"image has zero size ({width}x{height})")


# ---- 16-bit PNG (Pillow truncates 16-bit RGB PNGs to 8 bits, pypng reads them exactly) ----


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as file:
        reader = png.Reader(file=file)
        reader.preamble()
    # Checked here because Pillow refuses a zero-size PNG with a vaguer "cannot identify" error.
    _check_size(path, reader.width, reader.height)
    return reader.bitdepth


def _read_png16(path: Path) -> np.ndarray:
    with path.open("rb") as file:
        reader = png.Reader(file=file)
        # read(), not asDirect(): asDirect would shift samples down to the sBIT depth.
        width, height, rows, info = reader.read()
        planes = info["planes"]
        samples = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    colour_planes = planes - int(info["alpha"])
    if info["alpha"] and np.any(samples[:, :, colour_planes] != 0xFFFF):
        raise _transparency_error(path)
    colour = samples[:, :, :colour_planes]
    # A tRNS chunk marks one colour as fully transparent.
    key = reader.transparent
    if key is not None and np.any(np.all(colour == np.asarray(key, dtype=np.uint16), axis=2)):
        raise _transparency_error(path)
    return _as_rgb(_to_unit_float(colour, 0xFFFF))


# ---- everything else, through Pillow ----


def _tiff_bits_per_sample(image: Image.Image) -> int:
    bits = image.tag_v2.get(258, (8,))  # BitsPerSample
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _opaque_rgb(path: Path, image: Image.Image) -> Image.Image:
    """RGB version of an 8-bit-per-channel image; SRError if any pixel is transparent."""
    if image.mode in ("P", "PA") or "transparency" in image.info:
        # Palette and colour-key transparency become a real alpha channel first.
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    alpha_bands = [band for band in image.getbands() if band in ("A", "a")]  # "a": premultiplied
    if alpha_bands and np.any(np.asarray(image.getchannel(alpha_bands[0])) != 255):
        raise _transparency_error(path)
    return image.convert("RGB")


def _pixels_from_pillow(path: Path, image: Image.Image) -> tuple[np.ndarray, int]:
    if image.format not in _PILLOW_FORMATS:
        raise _fail(path, f"unsupported image format {image.format}")
    _check_size(path, image.width, image.height)
    if image.mode in _PILLOW_GRAY16_MODES:
        gray = np.asarray(image).astype(np.uint16)[:, :, None]
        return _as_rgb(_to_unit_float(gray, 0xFFFF)), 16
    if image.format == "TIFF" and _tiff_bits_per_sample(image) > 8:
        # Pillow would silently keep only the top 8 bits of 16-bit colour TIFFs.
        raise _fail(path, f"{_tiff_bits_per_sample(image)}-bit {image.mode} TIFF cannot be read at full "
                          "precision; convert it to a 16-bit PNG")
    if image.mode not in _PILLOW_8BIT_MODES:
        raise _fail(path, f"pixel format {image.mode!r} is not supported; convert to 8 or 16-bit RGB or gray")
    rgb = np.asarray(_opaque_rgb(path, image))
    return _to_unit_float(rgb, 0xFF), 8


def _read_with_pillow(path: Path) -> tuple[np.ndarray, int]:
    # EXIF orientation is deliberately not applied: the official reader (cv2 IMREAD_UNCHANGED) ignores it.
    with Image.open(path) as image:
        image.load()
        return _pixels_from_pillow(path, image)


def _is_png(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE


def _decode(path: Path) -> tuple[np.ndarray, int]:
    if _is_png(path) and _png_bit_depth(path) == 16:
        return _read_png16(path), 16
    return _read_with_pillow(path)


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty")


def read_image(path: str | Path) -> LoadedImage:
    """Reads an image as RGB float32 in [0, 1]; 16-bit PNG and gray TIFF keep their 16 bits."""
    path = Path(path)
    _check_readable_file(path)
    try:
        pixels, bit_depth = _decode(path)
    except SRError:
        raise
    except Exception as err:  # decoders raise many different types on corrupt or truncated data
        raise _fail(path, f"cannot be read as an image ({type(err).__name__}: {err})") from err
    return LoadedImage(pixels=pixels, bit_depth=bit_depth, path=path)


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding it; None when it cannot be read (reading
    the image then says why)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # any decoder failure: read_image reports it properly
        return None


# ---- writing ----


def _quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    # 8-bit: float32 product then round half to even, like skimage.img_as_ubyte in the official writer.
    # One scaled copy, rounded and clipped in place: a large image is not held four times over.
    dtype, peak = (np.float32, 255) if bit_depth == 8 else (np.float64, 65535)
    scaled = np.multiply(pixels, dtype(peak), dtype=dtype)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, peak, out=scaled)
    return scaled.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _png8_writer(pixels: np.ndarray) -> Callable[[BinaryIO], None]:
    image = Image.fromarray(_quantize(pixels, 8), mode="RGB")
    return lambda file: image.save(file, format="PNG")


def _png16_writer(pixels: np.ndarray) -> Callable[[BinaryIO], None]:
    height, width = pixels.shape[:2]
    # PNG stores 16-bit samples big-endian; write_packed takes rows already in that layout.
    rows = _quantize(pixels, 16).astype(">u2").reshape(height, width * 3)
    writer = png.Writer(width=width, height=height, greyscale=False, alpha=False, bitdepth=16)
    return lambda file: writer.write_packed(file, (row.tobytes() for row in rows))


def _npy_writer(pixels: np.ndarray) -> Callable[[BinaryIO], None]:
    array = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    return lambda file: np.save(file, array)


def _encoder_for(path: Path, pixels: np.ndarray, bit_depth: int) -> Callable[[BinaryIO], None]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy_writer(pixels)
    if suffix != ".png":
        raise _fail(path, f"cannot write {suffix or 'files without a suffix'}; use .png or .npy")
    if bit_depth not in (8, 16):
        raise _fail(path, f"PNG bit depth must be 8 or 16, got {bit_depth}")
    return _png8_writer(pixels) if bit_depth == 8 else _png16_writer(pixels)


def write_atomically(path: Path, encode: Callable[[BinaryIO], object]) -> None:
    """``encode`` writes the file's bytes; readers see the old file or the new one whole, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            encode(file)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int = 8) -> None:
    """Writes (H, W, 3) float pixels in [0, 1]: ``.png`` (8 or 16-bit RGB) or ``.npy`` (float32).

    The file appears complete or not at all (temp file in the same folder, then rename).
    """
    path = Path(path)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise _fail(path, f"pixels must have shape (H, W, 3), got {pixels.shape}")
    if np.isnan(pixels).any():
        raise _fail(path, "pixels contain NaN")
    encode = _encoder_for(path, pixels, bit_depth)
    try:
        write_atomically(path, encode)
    except OSError as err:
        detail = f"{err.strerror}: {err.filename}" if err.strerror and err.filename else err
        raise _fail(path, f"cannot write ({detail})") from err


# ---- inputs ----


def _images_in_folder(folder: Path) -> list[Path]:
    # Hidden files are skipped: macOS "._name.png" resource forks look like images but are not.
    return sorted(
        entry for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
    )


@dataclass(frozen=True)
class Inputs:
    images: list[Path]  # the image files to upscale, in order
    skipped: list[Path]  # files in the input folders that are not images


def collect_inputs(inputs: Sequence[str | Path]) -> Inputs:
    """Image files from files and/or folders (a folder's images, non-recursive, sorted by name)."""
    found: list[Path] = []
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(_images_in_folder(path))
            skipped.extend(sorted(entry for entry in path.iterdir() if entry.is_file() and not entry.name.startswith(".")
                                  and entry.suffix.lower() not in IMAGE_SUFFIXES))
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise _fail(path, f"not a supported image type (use one of {', '.join(sorted(IMAGE_SUFFIXES))})")
            found.append(path)
        else:
            raise _fail(path, "no such file or folder")
    if not found:
        names = ", ".join(str(item) for item in inputs) or "(no inputs given)"
        raise SRError(f"no image files found in {names}")
    # The same file given twice would be upscaled twice into the same output.
    return Inputs(list(dict.fromkeys(found)), skipped)
