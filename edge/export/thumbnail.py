"""A small JPEG of a camera at a moment: the keyframe at or before it, decoded.

The only decoding an export does: one picture per camera per mark, for the report.
Blocking (PyAV decodes, OpenCV scales and encodes): run it in a worker thread.
"""

from __future__ import annotations

import av
import cv2

from edge.recorder.catalog import KeyframeRow, SegmentRow

WIDTH = 240
JPEG_QUALITY = 75


class ThumbnailError(Exception):
    pass


def keyframe_jpeg(segment: SegmentRow, key: KeyframeRow, width: int = WIDTH) -> bytes:
    """The keyframe `key` of `segment` as a JPEG `width` pixels wide."""
    try:
        with av.open(str(segment.path)) as container:
            stream = container.streams.video[0]
            tb = stream.time_base
            ctx = stream.codec_context
            for packet in container.demux(stream):
                if packet.pts is None or not packet.is_keyframe:
                    continue
                if tb is not None and int(packet.pts * tb * 90_000) < key.pts:
                    continue
                pictures = list(ctx.decode(packet)) + list(ctx.decode(None))
                if not pictures:
                    break
                image = pictures[0].to_ndarray(format="bgr24")
                height = max(2, round(image.shape[0] * width / image.shape[1]))
                small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise ThumbnailError("JPEG encoding failed")
                return bytes(jpeg.tobytes())
    except (OSError, av.FFmpegError) as e:
        raise ThumbnailError(f"{segment.path.name}: {e}") from None
    raise ThumbnailError(f"{segment.path.name}: no picture at the keyframe")
