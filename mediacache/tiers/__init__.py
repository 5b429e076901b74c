"""The cache tiers and the lookup through them: the in-process LRU (L1), the shared
Redis tier with its value codec, and the cascade L1 -> Redis -> one store read."""
