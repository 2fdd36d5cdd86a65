"""Projections: deterministic functions from one decoded event to the Redis operations it implies."""
