"""Our partition rule equals Kafka's own Java code, run from the kafka-clients jar of the broker."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from infra.kafka_broker import ensure_jars
from infra.settings import StackSettings
from schemas.keys import murmur2, partition_for

pytestmark = pytest.mark.integration

JAVA = """
import java.nio.charset.StandardCharsets;
import java.io.*;
import org.apache.kafka.common.utils.Utils;

public class Murmur {
    public static void main(String[] args) throws IOException {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String hex; (hex = in.readLine()) != null; ) {
            byte[] bytes = new byte[hex.length() / 2];
            for (int i = 0; i < bytes.length; i++)
                bytes[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
            String id = new String(bytes, StandardCharsets.UTF_8);
            int hash = Utils.murmur2(id.getBytes(StandardCharsets.UTF_8));
            out.append(hash).append(' ').append(Utils.toPositive(hash) % partitions).append('\\n');
        }
        System.out.print(out);
    }
}
"""


def random_ids(count: int) -> list[str]:
    rng = random.Random(20261126)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.é€中😀"
    ids = [f"acc-{rng.getrandbits(128):032x}" for _ in range(count // 2)]
    ids += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(count - count // 2)
    ]
    return ids


@pytest.mark.parametrize("partitions", [12, 7])
def test_murmur2_partition_equals_the_java_default_partitioner(tmp_path: Path, partitions: int) -> None:
    libs = ensure_jars(StackSettings())
    source = tmp_path / "Murmur.java"
    source.write_text(JAVA)
    ids = random_ids(2000)
    result = subprocess.run(
        ["java", "-cp", f"{libs}/*", str(source), str(partitions)],
        input="\n".join(i.encode().hex() for i in ids) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    java = [tuple(map(int, line.split())) for line in result.stdout.splitlines()]
    assert len(java) == len(ids)
    ours = [(murmur2(i.encode()), partition_for(i, partitions)) for i in ids]
    mismatches = [(i, j, o) for i, j, o in zip(ids, java, ours, strict=True) if j != o]
    assert mismatches == []
