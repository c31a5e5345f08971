"""Thumbnails: one keyframe decoded, scaled and JPEG-encoded. Blocking: run in a thread.

This is the only place on the camera path that decodes video, and it decodes
a single keyframe at most every couple of seconds per camera. PyAV alone does all
three steps (FFmpeg's scaler and its MJPEG encoder): OpenCV and numpy would add
about 28 MB to every camera process for the same picture.
"""

from __future__ import annotations

from fractions import Fraction

import av

SIZE = (160, 90)
# MJPEG's quantiser, 2 (best) to 31: 6 is about libjpeg's quality 70 at this size.
JPEG_QSCALE = 6


class ThumbnailError(Exception):
    pass


def decode_keyframe(data: bytes, codec: str) -> av.VideoFrame:
    """Decode one Annex-B keyframe (with its parameter sets in-band) to a picture."""
    ctx = av.CodecContext.create("hevc" if codec == "h265" else codec, "r")
    assert isinstance(ctx, av.VideoCodecContext)
    try:
        frames = ctx.decode(av.Packet(data))
        frames += ctx.decode(None)  # flush: a lone keyframe may be held back one call
    except av.error.FFmpegError as e:
        raise ThumbnailError(f"cannot decode keyframe: {e}") from None
    if not frames:
        raise ThumbnailError("keyframe decoded to no picture")
    return frames[0]


def make_thumbnail(data: bytes, codec: str, size: tuple[int, int] = SIZE) -> bytes:
    """A small JPEG of the keyframe in `data`."""
    picture = decode_keyframe(data, codec)
    width, height = size
    small = picture.reformat(width=width, height=height, format="yuvj420p",
                             interpolation="AREA")
    small.pts = 0
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = JPEG_QSCALE
    try:
        packets = encoder.encode(small) + encoder.encode(None)
    except av.error.FFmpegError as e:
        raise ThumbnailError(f"JPEG encoding failed: {e}") from None
    if not packets:
        raise ThumbnailError("JPEG encoding gave nothing")
    return bytes(packets[0])
