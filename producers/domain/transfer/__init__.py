"""The transfer aggregate's pure domain: the state of one money transfer between two accounts."""
