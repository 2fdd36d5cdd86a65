"""The views: one module each, with its projection (event -> store writes), its queries (store reads
-> rows the query API returns) and its module-level `VIEW` spec, listed in registry.py."""
