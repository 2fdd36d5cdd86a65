"""Plays another team's system: follows only schemas/README.md, imports nothing of this project.

Usage: python foreign_system.py BOOTSTRAP_SERVERS SCHEMA_DIR
Credentials (when the broker asks for them) from KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: it runs as the `other-system` principal.
Sends OpenAccount to commands.account, waits for its CommandResult on results.account, reads the
resulting event from events.account at the result's position, and prints what it saw as JSON.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form


def security() -> dict[str, str]:
    """librdkafka security settings from the environment (none: PLAINTEXT)."""
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    conf = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        conf |= {
            "sasl.mechanism": os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            "sasl.username": os.environ["KAFKA_SASL_USERNAME"],
            "sasl.password": os.environ["KAFKA_SASL_PASSWORD"],
        }
    return conf


def load_schemas(folder: Path) -> tuple[dict[bytes, dict], dict[str, tuple[int, dict]]]:
    by_fingerprint, newest = {}, {}
    for path in sorted(folder.rglob("*.avsc")):
        name, version = path.name.split(".")[0], int(path.name.split(".")[1][1:])
        parsed = parse_schema(json.loads(path.read_text()), _write_hint=False)
        # The 8 bytes a frame carries: fastavro's hex string is them in order (little-endian).
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        by_fingerprint[fp] = parsed
        if name not in newest or newest[name][0] < version:
            newest[name] = (version, {"fp": fp, "schema": parsed})
    return by_fingerprint, {k: (v[0], v[1]) for k, v in newest.items()}


def frame(fp: bytes, schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\xc3\x01" + fp)
    schemaless_writer(out, schema, record)
    return out.getvalue()


def unframe(data: bytes, by_fingerprint: dict[bytes, dict]) -> dict:
    assert data[:2] == b"\xc3\x01", "not single-object encoded"
    schema = by_fingerprint[data[2:10]]
    return schemaless_reader(io.BytesIO(data[10:]), schema, schema)


def read_one(consumer: Consumer, tp: TopicPartition, match, within_s: float = 30) -> tuple[bytes, int]:
    consumer.assign([tp])
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        if match(msg):
            return msg.value(), msg.offset()
    raise SystemExit(f"nothing matched on {tp.topic}[{tp.partition}] within {within_s}s")


def main(bootstrap: str, schema_dir: str) -> None:
    by_fingerprint, newest = load_schemas(Path(schema_dir))
    account_id, command_id = f"foreign-{uuid.uuid4()}", str(uuid.uuid4())
    command = {
        "command_id": command_id,
        "aggregate_id": account_id,
        "expected_version": None,
        "correlation_id": command_id,
        "issued_at": datetime.now(UTC),
        "owner_id": "other-team",
        "currency": "CHF",
        "overdraft_limit": 0,
    }
    _, open_account = newest["OpenAccount"]

    # Results are read on the command's partition from the end offsets taken before producing.
    producer = Producer({"bootstrap.servers": bootstrap, **security(), "partitioner": "murmur2_random"})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **security(),
            "group.id": "other-system.contract-check",  # its ACLs cover groups other-system*
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    partitions = consumer.list_topics("results.account", timeout=10).topics["results.account"].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition("results.account", p), timeout=10)[1]
        for p in partitions
    }
    delivered = []
    producer.produce(
        "commands.account",
        key=account_id,
        value=frame(open_account["fp"], open_account["schema"], command),
        headers=[("command_id", command_id.encode()), ("actor", b"other-team-sync")],
        on_delivery=lambda err, msg: delivered.append((err, msg)),
    )
    producer.flush(10)
    ((err, msg),) = delivered
    assert err is None, err
    partition = msg.partition()
    value, _ = read_one(
        consumer,
        TopicPartition("results.account", partition, ends[partition]),
        lambda m: m.key() == command_id.encode(),
    )
    result = unframe(value, by_fingerprint)

    event_partition, event_offset = map(int, result["position"].split("-"))
    value, offset = read_one(
        consumer, TopicPartition("events.account", event_partition, event_offset), lambda m: True
    )
    event = unframe(value, by_fingerprint)
    print(
        json.dumps(
            {
                "command_partition": partition,
                "result": {
                    k: result[k] for k in ("command_id", "aggregate_id", "status", "version", "position")
                },
                "event": {
                    k: event[k]
                    for k in (
                        "event_type",
                        "aggregate_id",
                        "version",
                        "owner_id",
                        "currency",
                        "command_id",
                        "actor",
                    )
                },
                "event_offset": offset,
            }
        )
    )
    consumer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
