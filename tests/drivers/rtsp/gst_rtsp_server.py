"""A GStreamer RTSP server for interoperability tests (run with Debian's python3 + gi).

Usage: /usr/bin/python3 gst_rtsp_server.py PORT
Serves rtsp://127.0.0.1:PORT/test (H.264 from x264enc, 320x240, 30 fps).
Prints one line on stdout: "READY" once listening, or "MISSING <what>" (exit 3) when
GStreamer's RTSP server or an element it needs is not installed, so that the tests can
tell "not installed" from "installed but broken or slow".  Kept free of the edge code on
purpose: it is a non-ours server.
"""

import sys

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 "
    "! video/x-h264,profile=baseline "
    "! rtph264pay name=pay0 pt=96 )"
)
ELEMENTS = ("videotestsrc", "x264enc", "rtph264pay")
MISSING = 3  # exit status: not installed (anything else non-zero is a failure)


def main() -> int:
    port = sys.argv[1] if len(sys.argv) > 1 else "8554"
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:  # ValueError: a typelib gi does not have
        print(f"MISSING cannot import GStreamer's RTSP server: {exc}", flush=True)
        return MISSING
    Gst.init(None)
    absent = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if absent:
        print(f"MISSING GStreamer elements {', '.join(absent)}", flush=True)
        return MISSING
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        return 1
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
