"""The HTTP command API: parses requests, submits commands through Kafka, maps outcomes to HTTP."""
