"""Replay: a recorded session played back on a private bus and media plane."""
