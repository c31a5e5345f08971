"""The control bus: envelope, message types, topics, broker and client."""
