"""The read side's API: FastAPI over Redis views only, GET only."""
