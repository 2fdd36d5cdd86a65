"""The command side: HTTP command API, command processors, the pure account domain."""
