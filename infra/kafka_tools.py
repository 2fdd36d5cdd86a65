"""Kafka's own command-line tools (from the `kafka-tools` jar on the broker's classpath), run with
`--bootstrap-server` filled in from the settings and the caller's Kafka credentials (KAFKA_SASL_*,
schemas/kafka_security.py) passed as a temporary client config file: what operators already know,
beside `cqrs`."""

from __future__ import annotations

import subprocess
import tempfile
from typing import Any

from infra.kafka_broker import ensure_jars
from infra.settings import StackSettings
from schemas.kafka_security import KafkaSecurity

# `cqrs kafka NAME` runs the class that Kafka's `bin/kafka-NAME.sh` runs.
TOOLS = {
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "acls": "org.apache.kafka.tools.AclCommand",
}
# The option through which each tool reads a client config file (security settings).
CONFIG_OPTIONS = {
    "consumer-groups": "--command-config",
    "topics": "--command-config",
    "console-consumer": "--consumer.config",
    "get-offsets": "--command-config",
    "acls": "--command-config",
}

_LOG_CONFIG = """\
status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
"""


def tool_command(settings: StackSettings, tool: str, args: list[str]) -> list[str]:
    """The java command line of one tool; raises KeyError for an unknown tool name."""
    main_class = TOOLS[tool]
    libs = ensure_jars(settings)
    log_config = libs.parent / "tools-log4j2.properties"
    if not log_config.exists():
        log_config.write_text(_LOG_CONFIG)
    bootstrap = (
        [] if "--bootstrap-server" in args else ["--bootstrap-server", settings.kafka_bootstrap_servers]
    )
    return [
        "java",
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        f"{libs}/*",
        main_class,
        *bootstrap,
        *args,
    ]


def run_tool(
    settings: StackSettings, tool: str, args: list[str], **run: Any
) -> subprocess.CompletedProcess[Any]:
    """Run one tool (subprocess.run keywords in `run`) as the caller's Kafka principal; raises
    KeyError for an unknown tool name. The credentials go in a temporary file (mode 0600), never on
    the command line, unless the caller passes a config file of their own."""
    command = tool_command(settings, tool, args)
    security = KafkaSecurity()
    option = CONFIG_OPTIONS[tool]
    if option in args or security.security_protocol == "PLAINTEXT":
        return subprocess.run(command, **run)
    with tempfile.NamedTemporaryFile("w", prefix="cqrs-kafka-", suffix=".properties") as config:
        config.write(security.java_properties())
        config.flush()
        return subprocess.run([*command, option, config.name], **run)
