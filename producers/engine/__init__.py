"""The aggregate-agnostic command side: handler, wire mapping, processor, state loading. It names
no aggregate: each one is an `Aggregate` (producers/engine/aggregate.py) in the registry."""
