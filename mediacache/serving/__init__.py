"""The HTTP side: the ASGI app behind ``/media/{hash}``, the router in front of Django,
the server protocol's L1-hit shortcut, conditional requests and request limits."""
