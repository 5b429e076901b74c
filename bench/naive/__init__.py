"""The naive design, reproduced for the benchmark only: a sync Django view over django-redis."""
