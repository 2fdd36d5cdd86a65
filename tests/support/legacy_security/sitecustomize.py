"""Put on PYTHONPATH of the previous release's processes, which predate Kafka security: every
confluent-kafka client they make gets this process's KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_*
settings (as a deployment of that release would have been configured). Imports nothing of this
project, so the old release's own modules are the ones it runs."""

from __future__ import annotations

import os
from typing import Any

import confluent_kafka
import confluent_kafka.admin


def _security() -> dict[str, str]:
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    conf = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        conf |= {
            "sasl.mechanism": os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            "sasl.username": os.environ.get("KAFKA_SASL_USERNAME", ""),
            "sasl.password": os.environ.get("KAFKA_SASL_PASSWORD", ""),
        }
    return conf


def _secured(original: Any) -> Any:
    class Secured(original):  # type: ignore[misc, valid-type]
        def __init__(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            super().__init__({**_security(), **config}, *args, **kwargs)

    Secured.__name__ = Secured.__qualname__ = original.__name__
    return Secured


for _module, _name in (
    (confluent_kafka, "Producer"),
    (confluent_kafka, "Consumer"),
    (confluent_kafka.admin, "AdminClient"),
):
    setattr(_module, _name, _secured(getattr(_module, _name)))
