"""The local gateway's nginx configuration: rendered from deploy/gateway.conf, accepted by nginx."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.gateway import SHARED_CONF, main_conf, render, temp_paths
from infra.kafka_broker import StackError


def test_only_the_listen_address_changes() -> None:
    shared = SHARED_CONF.read_text()
    local = render(shared, 18000)
    assert "listen 127.0.0.1:18000;" in local and "listen 8000;" not in local
    assert local.replace("listen 127.0.0.1:18000;", "listen 8000;") == shared


def test_a_shared_file_without_its_one_listen_line_is_refused() -> None:
    with pytest.raises(StackError, match="exactly one"):
        render("server { listen 80; }", 18000)


def test_every_path_is_under_the_gateway_folder(tmp_path: Path) -> None:
    conf = main_conf(tmp_path, ["client_body", "proxy"], 18001, 18002)
    assert "server 127.0.0.1:18001;" in conf and "server 127.0.0.1:18002;" in conf
    for line in conf.splitlines():
        if line.strip().startswith(
            ("pid ", "error_log ", "client_body_temp_path", "proxy_temp_path", "include")
        ):
            assert str(tmp_path) in line, line


@pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="no nginx")
def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    (tmp_path / "logs").mkdir()
    (tmp_path / "temp").mkdir()
    (tmp_path / "gateway.conf").write_text(render(SHARED_CONF.read_text(), 18000))
    (tmp_path / "nginx.conf").write_text(main_conf(tmp_path, temp_paths(binary), 18001, 18002))
    argv = [binary, "-p", f"{tmp_path}/", "-e", str(tmp_path / "logs" / "error.log")]
    check = subprocess.run([*argv, "-c", str(tmp_path / "nginx.conf"), "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
