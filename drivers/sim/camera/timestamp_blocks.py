"""Machine-readable wall clock burnt into the picture.

A latency benchmark needs to know when a frame was encoded after it has been
through an encoder, RTP, the ingest and a decoder.  Text is not machine-readable
after compression, so the time is drawn as 48 black/white 16x16 blocks (one per
bit of the wall-clock milliseconds, mod 2**48).  Blocks are aligned to the
16x16 macroblock grid so each one is a single flat macroblock, which survives
even the 512 kbit/s sub stream.

Layout (2 rows x 25 blocks, 400x32 px, bottom-left corner)::

    [white ref][bit 47] ... [bit 24]
    [black ref][bit 23] ... [bit 0]

The reference blocks let the decoder reject frames that do not carry the code
(for example a frame from another camera) instead of returning a wrong time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

BLOCK = 16
BITS = 48
_PER_ROW = BITS // 2
_COLUMNS = _PER_ROW + 1
_ROWS = 2
WIDTH = _COLUMNS * BLOCK
HEIGHT = _ROWS * BLOCK
MODULUS = 1 << BITS
# A block whose centre mean is within this distance of mid-grey is ambiguous:
# the frame probably does not carry the code, so decoding refuses it.
_MARGIN = 48


def wall_ms() -> int:
    """Wall-clock milliseconds as encoded in the blocks (mod 2**48)."""
    return (time.time_ns() // 1_000_000) % MODULUS


def block_origin(width: int, height: int) -> tuple[int, int]:
    """Top-left pixel of the code for a frame of this size (macroblock aligned)."""
    if width < WIDTH + BLOCK or height < HEIGHT + 2 * BLOCK:
        raise ValueError(f"frame {width}x{height} too small for timestamp blocks")
    return BLOCK, (height // BLOCK - 3) * BLOCK


def draw_timestamp_blocks(frame: npt.NDArray[np.uint8], ms: int) -> None:
    """Draw `ms` (mod 2**48) into `frame` (H x W or H x W x C, uint8) in place."""
    height, width = frame.shape[:2]
    x0, y0 = block_origin(width, height)
    value = ms % MODULUS
    for row in range(_ROWS):
        y = y0 + row * BLOCK
        frame[y : y + BLOCK, x0 : x0 + BLOCK] = 255 if row == 0 else 0
        for col in range(_PER_ROW):
            bit_index = BITS - 1 - (row * _PER_ROW + col)
            on = (value >> bit_index) & 1
            x = x0 + (col + 1) * BLOCK
            frame[y : y + BLOCK, x : x + BLOCK] = 255 if on else 0


def decode_timestamp_blocks(frame: npt.NDArray[Any]) -> int | None:
    """Read back the milliseconds drawn by `draw_timestamp_blocks`.

    `frame` is a decoded picture at the camera's native size, BGR/RGB (H x W x 3)
    or grey (H x W).  Returns None when the frame carries no readable code.
    """
    if frame.ndim == 3:
        grey = frame.astype(np.float32).mean(axis=2)
    elif frame.ndim == 2:
        grey = frame.astype(np.float32)
    else:
        return None
    height, width = grey.shape
    try:
        x0, y0 = block_origin(width, height)
    except ValueError:
        return None
    region = grey[y0 : y0 + HEIGHT, x0 : x0 + WIDTH]
    # Sample only the centre 8x8 of each block: edges are blurred by the
    # deblocking filter and by neighbouring content.
    cells = region.reshape(_ROWS, BLOCK, _COLUMNS, BLOCK)[:, 4:12, :, 4:12]
    means = cells.mean(axis=(1, 3))
    white_ref, black_ref = float(means[0, 0]), float(means[1, 0])
    if white_ref < 128 + _MARGIN or black_ref > 128 - _MARGIN:
        return None
    threshold = (white_ref + black_ref) / 2
    data = means[:, 1:]
    if bool(np.any(np.abs(data - threshold) < _MARGIN / 2)):
        return None
    value = 0
    for bit in (data > threshold).reshape(-1):
        value = (value << 1) | int(bit)
    return value
