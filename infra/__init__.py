"""Operations: the local Kafka + Redis stack, topic provisioning, the `cqrs` CLI and service runner."""
