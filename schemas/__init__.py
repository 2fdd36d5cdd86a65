"""The event contract: Avro schemas, single-object codec, key and partition rules, topic specs."""
