"""Device drivers: code that talks to cameras, drones and links, with no bus knowledge."""
