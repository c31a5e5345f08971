"""Simulators that are real protocol servers, so testing the sim path tests the real path."""
