"""Faults under load: the scenarios (``chaos.scenarios``) and their runner (``chaos.run``)."""
