"""Mediacache engine: short links to objects in a store, served from cache tiers.

The engine knows nothing of chat: a host app registers a resolver that turns a
media hash into a :class:`mediacache.objects.MediaObject`.
"""
