"""A GStreamer RTSP server for interoperability tests (run with Debian's python3 + gi).

Usage: /usr/bin/python3 gst_rtsp_server.py PORT
Serves rtsp://127.0.0.1:PORT/test (H.264 from x264enc, 320x240, 30 fps).
Prints "READY" on stdout once listening.  Kept free of the edge code on purpose:
it is a non-ours server.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 "
    "! video/x-h264,profile=baseline "
    "! rtph264pay name=pay0 pt=96 )"
)


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else "8554"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
