"""Kafka's own command-line tools (from the `kafka-tools` jar on the broker's classpath), run with
`--bootstrap-server` filled in from the settings: what operators already know, beside `cqrs`."""

from __future__ import annotations

from infra.kafka_broker import ensure_jars
from infra.settings import StackSettings

# `cqrs kafka NAME` runs the class that Kafka's `bin/kafka-NAME.sh` runs.
TOOLS = {
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "topics": "org.apache.kafka.tools.TopicCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
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
