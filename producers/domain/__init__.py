"""Pure domains, one package per aggregate (commands, events, a decider); no I/O, no bytes."""
