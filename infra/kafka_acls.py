"""Who may do what on the local Kafka: the SCRAM users of every role and their ACLs, written down as
data and applied (idempotently) by the broker's `admin` after every start.

Topic and group patterns are PREFIXED, so the topic suffixes tests use (`events.account-<id>`) and
every generation's consumer group are covered. Only command-processor (and operator) may write
events, snapshots and results."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from infra.credentials import ADMIN, ROLES
from schemas.kafka_security import KafkaSecurity

TOPIC, GROUP, TXN, CLUSTER = (
    ResourceType.TOPIC,
    ResourceType.GROUP,
    ResourceType.TRANSACTIONAL_ID,
    ResourceType.BROKER,  # Kafka's CLUSTER resource (named kafka-cluster)
)
PREFIXED, LITERAL = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
READ, WRITE, DESCRIBE, CREATE, DELETE, ALL = (
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.DESCRIBE,
    AclOperation.CREATE,
    AclOperation.DELETE,
    AclOperation.ALL,
)
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: ResourceType
    name: str
    pattern: ResourcePatternType
    operations: tuple[AclOperation, ...]


def _grants(
    principal: str, *rows: tuple[ResourceType, str, ResourcePatternType, tuple[AclOperation, ...]]
) -> list[Grant]:
    return [Grant(principal, *row) for row in rows]


READ_SCHEMAS = (TOPIC, "schemas", LITERAL, (READ, DESCRIBE))
# Consumers that only assign partitions by hand still name a group, and librdkafka looks its
# coordinator up (FindCoordinator needs DESCRIBE on the group; refused, poll() returns
# GROUP_AUTHORIZATION_FAILED): the schemas reader everywhere, LogAdmin's and the dead-letter
# reader's `unused`, the command API's results reader.
SCHEMA_READER_GROUP = (GROUP, "schema-log-reader", LITERAL, (DESCRIBE,))
ASSIGN_ONLY_GROUP = (GROUP, "unused", LITERAL, (DESCRIBE,))

GRANTS: list[Grant] = [
    *_grants(
        "command-processor",
        (TOPIC, "commands.", PREFIXED, (READ, WRITE, DESCRIBE)),  # a misrouted command is passed on
        (TOPIC, "events.", PREFIXED, (READ, WRITE, DESCRIBE)),
        (TOPIC, "snapshots.", PREFIXED, (READ, WRITE, DESCRIBE)),
        (TOPIC, "results.", PREFIXED, (READ, WRITE, DESCRIBE)),
        READ_SCHEMAS,
        SCHEMA_READER_GROUP,
        (GROUP, "command-processor.", PREFIXED, (READ, DESCRIBE)),  # and its `.loader`
        (TXN, "command-processor.", PREFIXED, (WRITE, DESCRIBE)),
    ),
    *_grants(
        "command-api",
        (TOPIC, "commands.", PREFIXED, (WRITE, DESCRIBE)),
        (TOPIC, "results.", PREFIXED, (READ, DESCRIBE)),
        READ_SCHEMAS,
        SCHEMA_READER_GROUP,
        (GROUP, "command-api", LITERAL, (DESCRIBE,)),  # assign() only, never joins or commits
    ),
    *_grants(
        "projector",
        (TOPIC, "events.", PREFIXED, (READ, DESCRIBE)),
        (TOPIC, "deadletters.", PREFIXED, (WRITE, DESCRIBE)),
        READ_SCHEMAS,
        SCHEMA_READER_GROUP,
        ASSIGN_ONLY_GROUP,
        # projector.<source>.<view>.g<N>: faust's group, catch-up workers, offsets set for a new
        # generation, and abandoned generations' groups deleted.
        (GROUP, "projector.", PREFIXED, (READ, DESCRIBE, DELETE)),
    ),
    *_grants(
        "transfer-process",
        (TOPIC, "events.", PREFIXED, (READ, DESCRIBE)),  # events.transfer and events.account
        (TOPIC, "results.", PREFIXED, (READ, DESCRIBE)),
        (TOPIC, "commands.", PREFIXED, (WRITE, DESCRIBE)),
        (TOPIC, "transfer-process.", PREFIXED, (CREATE, READ, WRITE, DESCRIBE)),  # its facts topic
        READ_SCHEMAS,
        SCHEMA_READER_GROUP,
        (GROUP, "transfer-process", PREFIXED, (READ, DESCRIBE)),  # and the faust host's `-host`
        (TXN, "transfer-process", PREFIXED, (WRITE, DESCRIBE)),
    ),
    *_grants("query-api", READ_SCHEMAS, SCHEMA_READER_GROUP),  # GET /schemas: its only Kafka read
    *_grants(
        "other-system",
        (TOPIC, "commands.", PREFIXED, (WRITE, DESCRIBE)),
        (TOPIC, "events.", PREFIXED, (READ, DESCRIBE)),
        (TOPIC, "results.", PREFIXED, (READ, DESCRIBE)),
        READ_SCHEMAS,
        (GROUP, "other-system", PREFIXED, (READ, DESCRIBE)),
        (TXN, "other-system", PREFIXED, (WRITE, DESCRIBE)),
    ),
    # Everything the CLI and the test process do, but not a super user: what it may do is listed
    # here (and by `cqrs kafka acls --list`) like everybody else's.
    *_grants(
        "operator",
        (TOPIC, "*", LITERAL, (ALL,)),
        (GROUP, "*", LITERAL, (ALL,)),
        (TXN, "*", LITERAL, (ALL,)),
        (CLUSTER, "kafka-cluster", LITERAL, (ALL,)),
    ),
]


def bindings(grants: list[Grant] = GRANTS) -> list[AclBinding]:
    return [
        AclBinding(g.resource, g.name, g.pattern, f"User:{g.principal}", "*", op, AclPermissionType.ALLOW)
        for g in grants
        for op in g.operations
    ]


def admin_client(bootstrap: str, password: str) -> AdminClient:
    """The broker's own `admin` (SASL/PLAIN, the super user): only for users and ACLs."""
    security = KafkaSecurity.for_user(ADMIN, password, mechanism="PLAIN")
    return AdminClient({"bootstrap.servers": bootstrap, **security.librdkafka(), "log_level": 0})


def ensure_users_and_acls(bootstrap: str, passwords: dict[str, str], timeout_s: float = 30) -> None:
    """SCRAM credentials of every role (upserted: a changed password takes effect) and the ACLs
    (creating an existing one is a no-op)."""
    admin = admin_client(bootstrap, passwords[ADMIN])
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            role,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            passwords[role].encode(),
        )
        for role in ROLES
    ]
    futures = [
        *admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).values(),
        *admin.create_acls(bindings(), request_timeout=timeout_s).values(),
    ]
    for future in futures:
        try:
            future.result()
        except KafkaException as exc:
            raise RuntimeError(f"could not set Kafka users and ACLs: {exc}") from None
