"""The link a sweep prints opens MLflow's runs table on its trials (a real headless Chromium
against a real `mlflow server`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from harness.sweep import run_sweep
from tests.sweep_helpers import tiny_config


def _chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(n)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium (apt install chromium)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds:.0f} s")


def _browse(chromium: str, url: str, profile: Path, *extra: str) -> str:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "--virtual-time-budget=30000",
               "--window-size=1920,1000", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    return done.stdout


def test_the_printed_link_opens_the_trial_runs_with_their_f1(tmp_path, capsys):
    chromium = _chromium()
    config = tiny_config(tmp_path, tasks=["QC"], design={"kind": "grid", "switches": ["LT"]},
                         training={"epochs": 2, "learning_rate": 3e-3, "batch_size": 16,
                                   "max_length": 256})
    summary = run_sweep(config, progress=False)
    assert summary.dashboard[0].startswith(f"Dashboard: {sys.executable} -m mlflow ui ")
    link = summary.dashboard[-1].split("open ", 1)[1]
    assert link in capsys.readouterr().out
    assert "workflowType=machine_learning" in link and "/runs?" in link

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", config.tracking.uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/health")
        url = link.replace("http://127.0.0.1:5000", f"http://127.0.0.1:{port}")
        dom = _browse(chromium, url, tmp_path / "profile", "--dump-dom")
        screenshot = tmp_path / "dashboard.png"
        _browse(chromium, url, tmp_path / "profile2", f"--screenshot={screenshot}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    mlflow.set_tracking_uri(config.tracking.uri)
    runs = mlflow.search_runs(experiment_names=["e2e"], filter_string="tags.`harness.role` = 'trial'")
    assert len(runs) == 2
    for name, f1 in zip(runs["tags.mlflow.runName"], runs["metrics.f1"], strict=True):
        assert name in dom, f"trial run {name!r} is not in the runs table"
        assert repr(float(f1)) in dom, f"f1 {f1} of {name!r} is not shown"
    assert "No data available" not in dom  # not the GenAI overview page
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("HARNESS_SCREENSHOT_DIR"):  # how docs/img/dashboard.png is made
        shutil.copy(screenshot, Path(os.environ["HARNESS_SCREENSHOT_DIR"]) / "dashboard.png")
