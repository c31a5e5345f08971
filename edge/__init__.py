"""edge: onboard software for an emergency mobile command vehicle."""

__version__ = "0.1.0"
