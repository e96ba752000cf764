"""The web tests: hillsync serve through its ASGI client, a real browser and real processes."""
