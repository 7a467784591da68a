"""Zeroes the GPU code of every architecture but one in a CUDA shared library's ``.nv_fatbin`` section, in place.

onnxruntime-gpu's CUDA provider carries its kernels for sm_75 to sm_120 (284 MB); a machine reached only
through a 64 MiB transfer needs the kernels of its own GPU alone. The entries' headers and the file's layout
stay as they are (the loader still finds the kept architecture's entries where it expects them); the zeroed
payloads compress to nothing. Usage: ``python strip_fatbin.py LIBRARY.so SM`` (e.g. 90 for Hopper).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
ENTRY = struct.Struct("<HHIQIIII")  # kind, version, header size, payload size, compressed size, -, version, sm


def fatbin_section(data: bytes | bytearray) -> tuple[int, int]:
    """(offset, size) of the ELF64 file's ``.nv_fatbin`` section."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * entsize) for i in range(count)]
    strings = headers[names][4]
    for header in headers:
        start = strings + header[0]
        if data[start:data.index(b"\0", start)] == b".nv_fatbin":
            return header[4], header[5]
    raise ValueError("no .nv_fatbin section")


def strip(path: Path, keep_sm: int) -> tuple[int, int]:
    """Zeroes the payload of every entry not for ``keep_sm``: (bytes kept, bytes zeroed)."""
    data = bytearray(path.read_bytes())
    offset, size = fatbin_section(data)
    kept = zeroed = 0
    position = offset
    while position < offset + size:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, position)
        if magic != FATBIN_MAGIC:  # containers are 8-byte aligned, with padding between them
            position += 8
            continue
        entry, end = position + header_size, position + header_size + fat_size
        while entry < end:
            _, _, entry_header, payload, _, _, _, sm = ENTRY.unpack_from(data, entry)
            body = slice(entry + entry_header, entry + entry_header + payload)
            if sm == keep_sm:
                kept += payload
            else:
                data[body] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        position = end
    path.write_bytes(data)
    return kept, zeroed


if __name__ == "__main__":
    kept, zeroed = strip(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"kept {kept / 1e6:.1f} MB of sm_{sys.argv[2]} code, zeroed {zeroed / 1e6:.1f} MB")
