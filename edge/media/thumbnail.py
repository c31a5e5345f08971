"""Thumbnails: one keyframe decoded, scaled and JPEG-encoded. Blocking: run in a thread.

This is the only place on the camera path that decodes video, and it decodes
a single keyframe at most every couple of seconds per camera.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

SIZE = (160, 90)
JPEG_QUALITY = 70


class ThumbnailError(Exception):
    pass


def decode_keyframe(data: bytes, codec: str) -> np.ndarray:
    """Decode one Annex-B keyframe (with its parameter sets in-band) to BGR pixels."""
    ctx = av.CodecContext.create("hevc" if codec == "h265" else codec, "r")
    assert isinstance(ctx, av.VideoCodecContext)
    try:
        frames = ctx.decode(av.Packet(data))
        frames += ctx.decode(None)  # flush: a lone keyframe may be held back one call
    except av.error.FFmpegError as e:
        raise ThumbnailError(f"cannot decode keyframe: {e}") from None
    if not frames:
        raise ThumbnailError("keyframe decoded to no picture")
    image: np.ndarray = frames[0].to_ndarray(format="bgr24")
    return image


def make_thumbnail(data: bytes, codec: str, size: tuple[int, int] = SIZE) -> bytes:
    """A small JPEG of the keyframe in `data`."""
    image = decode_keyframe(data, codec)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ThumbnailError("JPEG encoding failed")
    return bytes(jpeg.tobytes())
