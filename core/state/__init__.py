"""State: memory and Redis stores, delivery records, conversations, caches, rate limits."""
