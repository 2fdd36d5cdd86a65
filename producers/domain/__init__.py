"""The pure account domain: commands, events, rules. No I/O, no bytes."""
