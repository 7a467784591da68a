"""Reading and writing images for the runtime (Pillow + pypng, no OpenCV).

Every problem with an input or output file becomes an ``SRError`` with a one-line message naming the
file, so the CLI can report it without a traceback. Pixels are (H, W, 3) float32 RGB in [0, 1].
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
from PIL import Image

from .errors import SRError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# What Pillow calls the formats behind those suffixes, the ones tried when a file is opened (JPEG includes
# MPO, the multi-picture JPEGs of cameras).
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
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


class _PngHeader(png.Reader):
    """pypng's reader of the chunks before the pixels, also noting an APNG's animation control chunk (acTL,
    which comes before the first IDAT): its frame count may say 1 and the file hold more."""

    animated = False

    def _process_acTL(self, data: bytes) -> None:  # pypng calls _process_<chunk type> for each chunk it reads
        self.animated = True


def _png_header(path: Path) -> _PngHeader:
    with path.open("rb") as file:
        reader = _PngHeader(file=file)
        reader.preamble()
    # Checked here because Pillow refuses a zero-size PNG with a vaguer "cannot identify" error.
    _check_size(path, reader.width, reader.height)
    return reader


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


@contextmanager
def _pillow_image(path: Path) -> Iterator[Image.Image]:
    """Pillow's ``Image.open`` for the formats sr-export reads, without its decompression-bomb refusal: that
    refusal would hide the size of a large image's header from the size guard, which decides instead
    (``max_pixels`` of ``read_image``, the memory estimate of a run). Lazy: only the header is read."""
    if any(name not in Image.OPEN for name in _PILLOW_FORMATS):
        Image.init()
    with open(path, "rb") as file:
        prefix = file.read(16)
        for name in _PILLOW_FORMATS:
            factory, accept = Image.OPEN[name]
            if accept is None or accept(prefix) is True:
                file.seek(0)
                with factory(file, str(path)) as image:
                    yield image
                return
    raise _fail(path, f"cannot be read as an image (not a {', '.join(_PILLOW_FORMATS[:-1])} or WebP file)")


@dataclass(frozen=True)
class ImageHeader:
    path: Path
    width: int
    height: int
    frames: int  # pictures in the file: more than one in animations, multi-page TIFFs and camera MPO files
    format: str  # Pillow's name of it
    animated: bool = False  # an animated PNG, whatever frame count it declares


def _probe_image(path: str | Path) -> ImageHeader:
    """What the file's header says, without decoding the pixels; an SRError naming the file if it is not an
    image sr-export reads."""
    path = Path(path)
    _check_readable_file(path)
    try:
        animated = _is_png(path) and _png_header(path).animated  # pypng decodes 16-bit PNGs: its reading counts
        with _pillow_image(path) as image:
            return ImageHeader(path, image.width, image.height, getattr(image, "n_frames", 1), image.format or "",
                               animated)
    except SRError:
        raise
    except Exception as err:  # decoders raise many different types on corrupt or truncated data
        raise _fail(path, f"cannot be read as an image ({type(err).__name__}: {err})") from err


def _check_frames(header: ImageHeader) -> None:
    if header.animated:
        raise _fail(header.path, "is an animated PNG (APNG); sr-export upscales single images: extract the frames "
                                 "first")
    if header.frames == 1:
        return
    if header.format == "MPO":  # a camera's main picture, then previews or a second view
        log.warning("%s holds %d pictures (MPO); the first, the main image, is upscaled", header.path, header.frames)
        return
    raise _fail(header.path, f"has {header.frames} frames (an animation or a multi-page file); sr-export upscales single "
                      "images: extract the frames first")


def _read_with_pillow(path: Path) -> tuple[np.ndarray, int]:
    # EXIF orientation is deliberately not applied: the official reader (cv2 IMREAD_UNCHANGED) ignores it.
    with _pillow_image(path) as image:
        image.load()
        return _pixels_from_pillow(path, image)


def _is_png(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE


def _decode(path: Path) -> tuple[np.ndarray, int]:
    if _is_png(path) and _png_header(path).bitdepth == 16:
        return _read_png16(path), 16
    return _read_with_pillow(path)


def _check_readable_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(path, "not a file (a folder)")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(path, "not a regular file (a pipe, socket or device); give an image file")
    if info.st_size == 0:
        raise _fail(path, "file is empty")


def within_pillows_limit(header: ImageHeader) -> None:
    """Refuses an image larger than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, doubled)."""
    if Image.MAX_IMAGE_PIXELS is not None and header.width * header.height > 2 * Image.MAX_IMAGE_PIXELS:
        raise _fail(header.path, f"{header.width}x{header.height} is more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels")


def read_image(path: str | Path, admit: Callable[[ImageHeader], None] = within_pillows_limit) -> LoadedImage:
    """Reads an image as RGB float32 in [0, 1]; 16-bit PNG and gray TIFF keep their 16 bits. ``admit`` judges
    its header before any pixel is decoded (and raises to refuse it; the default: Pillow's own limit). An
    animation or a multi-page file is refused (a camera's multi-picture JPEG gives its main picture, with a
    warning)."""
    path = Path(path)
    header = _probe_image(path)
    _check_frames(header)
    admit(header)
    try:
        pixels, bit_depth = _decode(path)
    except SRError:
        raise
    except Exception as err:  # decoders raise many different types on corrupt or truncated data
        raise _fail(path, f"cannot be read as an image ({type(err).__name__}: {err})") from err
    return LoadedImage(pixels=pixels, bit_depth=bit_depth, path=path)


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


NAME_MAX = 255  # bytes in a file name, on most file systems


def fitted_name(name: str, extra: int) -> str:
    """``name``, shortened (its start, then a hash of the whole) where ``extra`` more bytes would pass
    ``NAME_MAX``: the hidden siblings of a file or folder whose name is already near the limit."""
    if len(name.encode()) + extra <= NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return name.encode()[:NAME_MAX - extra - len(digest) - 1].decode(errors="ignore") + "~" + digest


def temp_prefix(path: Path) -> str:
    """What the temporary files of ``path`` are named up to their random part: ".<name>.<8 hex>.tmp"."""
    return f".{fitted_name(path.name, len('..12345678.tmp'))}."


@dataclass(frozen=True)
class OutputFile:
    """A file a run writes per image beside its output (InvSR's steps map), and whether an existing one may be
    replaced; a plain path given to the runtime may be."""

    path: Path
    replace: bool = False

    @classmethod
    def of(cls, target: str | Path | OutputFile) -> OutputFile:
        return target if isinstance(target, OutputFile) else cls(Path(target), replace=True)


class OutputExists(SRError):
    """The output file is already there and replacing it was not asked for."""


def write_atomically(path: Path, encode: Callable[[BinaryIO], object], replace: bool = True) -> None:
    """``encode`` writes the file's bytes; readers see the old file or the new one whole, never a part.
    ``replace=False``: an existing ``path`` (even one that appears while this writes) is kept and
    ``OutputExists`` raised. The temporary file is locked while it is written, so another process can tell
    a live writer's file from one a killed process left (``remove_stale_temps``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{temp_prefix(path)}{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            encode(file)
            file.flush()
            if replace:
                os.replace(temp, path)
            else:
                _link_new(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _link_new(temp: Path, path: Path) -> None:
    """``temp`` becomes ``path`` only if nothing is there: a hard link fails on an existing name, atomically."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise OutputExists(f"{path} exists; pass --overwrite to replace it") from None
    except OSError:  # a file system without hard links: check, then rename (a race with another writer remains)
        if path.exists() or path.is_symlink():
            raise OutputExists(f"{path} exists; pass --overwrite to replace it") from None
        os.rename(temp, path)


def temp_files(path: Path) -> list[os.DirEntry]:
    """The temporary files of ``path`` in its folder (of writers at work, or killed)."""
    name = re.compile(re.escape(temp_prefix(path)) + r"[0-9a-f]{8}\.tmp")
    try:
        return [e for e in os.scandir(path.parent) if name.fullmatch(e.name)]
    except OSError:  # no folder yet: nothing there
        return []


def remove_stale_temps(path: Path) -> None:
    """Removes the temporary files of ``path`` that killed writers left: those no process holds a lock on (a
    writer takes it right after creating the file; one caught in between loses its file and fails, in one line)."""
    for entry in temp_files(path):
        try:
            with open(entry.path, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live writer holds it
                os.unlink(entry.path)
        except OSError:  # BlockingIOError: being written; FileNotFoundError: gone since
            continue


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int = 8, replace: bool = True) -> None:
    """Writes (H, W, 3) float pixels in [0, 1]: ``.png`` (8 or 16-bit RGB) or ``.npy`` (float32).

    The file appears complete or not at all (temp file in the same folder, then rename); ``replace=False``
    keeps an existing file (``OutputExists``).
    """
    path = Path(path)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise _fail(path, f"pixels must have shape (H, W, 3), got {pixels.shape}")
    if np.isnan(pixels).any():
        raise _fail(path, "pixels contain NaN")
    encode = _encoder_for(path, pixels, bit_depth)
    try:
        write_atomically(path, encode, replace)
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
    lists: list[Path] = field(default_factory=list)  # the list files that named images (inputs too)


def collect_inputs(inputs: Sequence[str | Path], lists: Sequence[Path] = ()) -> Inputs:
    """Image files from files and/or folders (a folder's images, non-recursive, sorted by name); ``lists``:
    the list files that named some of them."""
    found: list[Path] = []
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            if path.is_dir():
                found.extend(_images_in_folder(path))
                skipped.extend(sorted(entry for entry in path.iterdir() if entry.is_file()
                                      and not entry.name.startswith(".") and entry.suffix.lower() not in IMAGE_SUFFIXES))
            elif path.is_file():
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise _fail(path, f"not a supported image type (use one of {', '.join(sorted(IMAGE_SUFFIXES))})")
                found.append(path)
            elif path.exists():
                raise _fail(path, "not a regular file (a pipe, socket or device); give image files or folders")
            else:
                raise _fail(path, "no such file or folder")
        except OSError as err:
            raise _fail(path, f"cannot be read ({err.strerror or err})") from None
    if not found:
        names = ", ".join(str(item) for item in inputs) or "(no inputs given)"
        raise SRError(f"no image files found in {names}")
    # The same file given twice would be upscaled twice into the same output.
    return Inputs(list(dict.fromkeys(found)), skipped, list(lists))
