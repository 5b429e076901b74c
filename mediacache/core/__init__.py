"""The primitives every part of the engine uses: settings, media objects, hashes and
links, file types, response headers, and this process's counters. Imports nothing
else of the engine."""
