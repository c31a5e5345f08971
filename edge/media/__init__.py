"""The media plane: encoded access units from a camera to its consumers, never decoded."""
