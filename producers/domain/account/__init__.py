"""The account aggregate's pure domain: commands, events, rules. No I/O, no bytes."""
