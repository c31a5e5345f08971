"""The dashboard's screens: the main view, the detail views and help."""
