"""Encode (H, W) uint8 label maps as grayscale PNGs, about 20x faster than Pillow.

Pillow (like libpng) tries five row filters on every row, which suits photographs; on label maps
that search costs ~6 ms per 1024x2048 frame, more than the compression. Label maps are long runs
of one id that mostly repeat the row above, so the PNG "Up" filter on every row turns them into
zeros, and zlib-ng at level 2 (imagecodecs) compresses those in ~0.3 ms to the size Pillow's
default reaches (~13 KB for a Cityscapes frame). Any PNG reader decodes the same pixels.
"""
from __future__ import annotations

import struct
import zlib

import imagecodecs
import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY8 = (8, 0, 0, 0, 0)  # bit depth 8, colour type 0 (grayscale), deflate, adaptive filtering, no interlace
_FILTER_UP = 2  # scanline = row minus the row above (mod 256); the first row's "above" is zeros


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_label_png(labels: np.ndarray) -> bytes:
    """(H, W) uint8 -> PNG file bytes (8-bit grayscale)."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"expected an (H, W) uint8 label map, got {labels.dtype} {labels.shape}")
    height, width = labels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)  # (H, 1 + W): filter-type byte, then the filtered row
    rows[:, 0] = _FILTER_UP
    rows[0, 1:] = labels[0]
    np.subtract(labels[1:], labels[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps mod 256, as PNG wants
    header = struct.pack(">II", width, height) + bytes(_GRAY8)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", imagecodecs.zlibng_encode(rows, level=2))
            + _chunk(b"IEND", b""))
