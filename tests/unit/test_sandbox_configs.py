"""The sandbox's generated configurations, checked by the real tools (haproxy -c, promtool)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from openbell.sandbox import configs


def test_haproxy_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.fail("haproxy is not installed: run `make setup`")
    weights = tmp_path / "weights.map"
    weights.write_text(configs.haproxy_weights(25))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(configs.haproxy_cfg(
        8080, 8404, tmp_path / "admin.sock", weights,
        [configs.Backend("gateway-1", 9001), configs.Backend("gateway-2", 9002)],
        [configs.Backend("gateway-canary-1", 9003, disabled=True)], 9010, 9011, maxconn=4000))
    done = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = cfg.read_text()
    assert "server gateway-canary-1 127.0.0.1:9003 check disabled" in text
    assert "server gateway-2 127.0.0.1:9002 check\n" in text


def test_prometheus_config_is_valid_for_promtool(tmp_path: Path) -> None:
    targets = tmp_path / "gateway.json"
    targets.write_text(configs.file_sd([("127.0.0.1:9001", {"replica": "gateway-1", "role": "stable"})]))
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups: []\n")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(configs.prometheus_yml(0.5, [rules], {"feed": ["127.0.0.1:9005"]}, {"gateway": targets}))
    done = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(cfg.read_text())["global"]["scrape_interval"] == "500ms"
