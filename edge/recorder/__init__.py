"""The recorder: video, bus and MAVLink logs on disk, crash-safe."""
