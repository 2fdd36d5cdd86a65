"""How every process authenticates to Kafka (SASL, TLS), in one place: one typed settings object
read from the environment, and the same settings rendered for librdkafka (confluent-kafka), faust
(aiokafka) and Kafka's Java clients and tools.

The default is PLAINTEXT with no credentials, so a deployment opts in; the local stack
(`cqrs exec`, `cqrs run`, infra/services.py) sets SASL_PLAINTEXT with SCRAM-SHA-512 and each
process's own principal."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Protocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

_LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


class KafkaSecurity(BaseSettings):
    """KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and
    the TLS pass-through KAFKA_SSL_CA_LOCATION, KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE,
    KAFKA_SSL_KEY_PASSWORD, KAFKA_SSL_ENDPOINT_IDENTIFICATION."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=None, extra="ignore")

    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None  # PEM file of the CAs that signed the brokers' certificates
    ssl_certfile: str | None = None  # client certificate (PEM), for brokers that require one
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification: bool = True  # check the broker's host name against its certificate

    @classmethod
    def for_user(
        cls,
        username: str,
        password: str,
        mechanism: Mechanism = "SCRAM-SHA-512",
        protocol: Protocol = "SASL_PLAINTEXT",
    ) -> KafkaSecurity:
        """One principal's SASL settings (TLS ones still from the environment)."""
        return cls(
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=SecretStr(password),
        )

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def username(self) -> str | None:
        return self.sasl_username if self.sasl else None

    def _password(self) -> str:
        return self.sasl_password.get_secret_value() if self.sasl_password else ""

    def librdkafka(self) -> dict[str, Any]:
        """confluent-kafka (librdkafka) properties, to merge into a client's configuration."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol.lower()}
        if self.sasl:
            conf |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username or "",
                "sasl.password": self._password(),
            }
        if self.tls:
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_endpoint_identification else "none"
            )
            optional = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certfile,
                "ssl.key.location": self.ssl_keyfile,
                "ssl.key.password": self.ssl_key_password.get_secret_value()
                if self.ssl_key_password
                else None,
            }
            conf |= {k: v for k, v in optional.items() if v}
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_location)
        context.check_hostname = self.ssl_endpoint_identification
        if self.ssl_certfile:
            key_password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, key_password)
        return context

    def faust_credentials(self) -> Any:
        """faust's `broker_credentials` (aiokafka speaks SCRAM-SHA-256/512 and PLAIN); None: PLAINTEXT."""
        import faust  # only the faust processes pay for the import

        if self.sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self._password(),
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        context = self.ssl_context()
        return faust.SSLCredentials(context) if context is not None else None

    def java_properties(self) -> str:
        """The same settings as a Java client .properties text (Kafka's tools, the Java client)."""
        lines = [f"security.protocol={self.security_protocol}"]
        if self.sasl:
            login = _LOGIN_MODULES[self.sasl_mechanism]
            lines += [
                f"sasl.mechanism={self.sasl_mechanism}",
                f'sasl.jaas.config={login} required username="{_jaas(self.sasl_username or "")}" '
                f'password="{_jaas(self._password())}";',
            ]
        if self.tls:
            lines.append(
                "ssl.endpoint.identification.algorithm="
                + ("https" if self.ssl_endpoint_identification else "")
            )
            if self.ssl_ca_location:
                lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.ssl_ca_location}"]
            if self.ssl_certfile and self.ssl_keyfile:
                # Java reads a PEM key store from one file holding the key and the chain.
                lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={self.ssl_certfile}"]
                if self.ssl_key_password:
                    lines.append(f"ssl.key.password={self.ssl_key_password.get_secret_value()}")
        return "".join(f"{line.replace(chr(92), chr(92) * 2)}\n" for line in lines)


def _jaas(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def kafka_config(bootstrap: str, settings: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka client configuration: the servers, this process's security settings (from
    the environment) and the client's own settings."""
    return {"bootstrap.servers": bootstrap, **KafkaSecurity().librdkafka(), **(settings or {}), **extra}
