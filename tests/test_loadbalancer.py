"""``nbapps deploy nginx-config``: the generated config is valid nginx and keeps the base URL.

The rule itself (requests of one app page on one replica, failover on kill -9) is tested through
a real nginx in ``tests/test_replicas_lb.py``; here only what needs no gallery.
"""
from __future__ import annotations

import subprocess

import pytest

from nbapps.cli.main import main
from nbapps.errors import UsageError
from nbapps.loadbalancer import nginx_config, replica_address
from tests.nginx_lb import find_nginx, main_config


@pytest.mark.parametrize(("given", "address"), [
    ("127.0.0.1:8866", "127.0.0.1:8866"),
    ("http://10.0.0.5:8866/", "10.0.0.5:8866"),
    ("gallery-0.gallery", "gallery-0.gallery:80"),
    ("http://[::1]:8866", "[::1]:8866"),
])
def test_replica_addresses(given, address):
    assert replica_address(given) == address


@pytest.mark.parametrize("given", ["https://10.0.0.5:8866", "10.0.0.5:8866/gallery/",
                                   "http://u:p@10.0.0.5:8866", "10.0.0.5:99999", ""])
def test_replica_addresses_refused(given):
    with pytest.raises(UsageError):
        replica_address(given)


def test_cli_prints_the_config_for_every_replica_and_the_base_url(capsys):
    assert main(["deploy", "nginx-config", "--replica", "10.0.0.5:8866", "--replica",
                 "http://10.0.0.6:8866", "--base-url", "team/gallery", "--access-log",
                 "off"]) == 0
    out = capsys.readouterr().out
    assert "server 10.0.0.5:8866 max_fails=1" in out and "server 10.0.0.6:8866 max_fails" in out
    assert '"~^/team/gallery/apps/[^/]+/~t/' in out  # the ticket map keeps the prefix
    assert '"~^\\|/team/gallery/apps/"' in out
    assert "hash $nbapps_affinity consistent;" in out and "access_log off;" in out
    with pytest.raises(SystemExit) as exit_info:  # --replica is required
        main(["deploy", "nginx-config"])
    assert exit_info.value.code == 2


def test_the_read_timeout_takes_hung_replicas_out_of_the_way(capsys):
    assert "proxy_read_timeout 60s;" in nginx_config(["10.0.0.5:8866"])  # the default
    assert main(["deploy", "nginx-config", "--replica", "10.0.0.5:8866",
                 "--read-timeout", "20"]) == 0
    out = capsys.readouterr().out
    assert "proxy_read_timeout 20s;" in out and "proxy_next_upstream error timeout;" in out
    assert main(["deploy", "nginx-config", "--replica", "10.0.0.5:8866",
                 "--read-timeout", "0"]) == 2
    assert "NBA100" in capsys.readouterr().err


def test_cli_refuses_a_bad_replica(capsys):
    assert main(["deploy", "nginx-config", "--replica", "https://x:1"]) == 2
    assert "NBA100" in capsys.readouterr().err


def test_nginx_accepts_the_config(tmp_path):
    nginx = find_nginx()
    http_part = tmp_path / "nbapps.conf"
    http_part.write_text(nginx_config(["127.0.0.1:8866", "127.0.0.1:8867"],
                                      listen="127.0.0.1:8080", base_url="/team/gallery/",
                                      access_log=str(tmp_path / "access.log")))
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text(main_config(tmp_path, http_part))
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(main_conf),
                        "-e", str(tmp_path / "error.log")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
