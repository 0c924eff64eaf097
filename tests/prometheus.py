"""A real Prometheus on loopback for the tests, scraping the simulated dcgm-exporter.

Debian's /usr/bin/prometheus runs on a free port with a generated config (scrape interval 1 s)
and its TSDB in the test's directory; `start()` waits until it is ready and has scraped every
target twice, as REFERENCE.md advises before querying. The simulated endpoints
(gputui/collect/dcgm_sim.py) run in a child process, fed a pipe: closing it stops them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import need_program
from tests.openssh import free_port

SCRAPE_S = 1.0


class SimDcgm:
    """`python -m gputui.collect.dcgm_sim` over `mix`, on `endpoints` loopback ports."""

    def __init__(
        self,
        directory: Path,
        mix: str,
        endpoints: int = 2,
        elapsed_s: float | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.ports_file = directory / "dcgm-ports.json"
        args = [sys.executable, "-m", "gputui.collect.dcgm_sim", "--hosts", mix]
        args += ["--endpoints", str(endpoints), "--ports-file", str(self.ports_file)]
        if elapsed_s is not None:
            args += ["--sim-elapsed", str(elapsed_s)]
        self.args = [*args, *extra]  # e.g. --jobs, --hpc-job HOST:GPUS=TEXT
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoints: list[int] = []
        self.hosts: dict[str, int] = {}

    def start(self, timeout_s: float = 30.0) -> None:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while not self.ports_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dcgm_sim exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("dcgm_sim did not start")
            time.sleep(0.05)
        doc = json.loads(self.ports_file.read_text())
        self.endpoints, self.hosts = doc["endpoints"], doc["hosts"]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class PrometheusServer:
    """One Prometheus scraping `targets` (host:port) every SCRAPE_S seconds."""

    def __init__(self, directory: Path, targets: list[str], web_config: str | None = None) -> None:
        self.binary = need_program("prometheus", "/usr/bin/prometheus")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = targets
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_S:g}s\n"
            f"  scrape_timeout: {SCRAPE_S:g}s\n"
            "scrape_configs:\n"
            "  - job_name: dcgm\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.args = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        if web_config is not None:
            web = self.dir / "web.yml"
            web.write_text(web_config)
            self.args.append(f"--web.config.file={web}")
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_scrapes: bool = True, timeout_s: float = 30.0) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        if wait_scrapes:
            self.wait_scrapes(2, deadline)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                return bool(reply.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # behind basic auth: it answers, so it is up
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as reply:
            result: list[dict[str, object]] = json.load(reply)["data"]["result"]
            return result

    def wait_scrapes(self, n: int, deadline: float) -> None:
        """Until every target was scraped `n` times (Prometheus' own scrape counter)."""
        promql = f'count_over_time(up{{job="dcgm"}}[{int(SCRAPE_S * 60)}s])'
        while time.monotonic() < deadline:
            counts = [float(r["value"][1]) for r in self.query(promql)]  # type: ignore[index]
            if len(counts) == len(self.targets) and min(counts) >= n:
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not scrape {self.targets} {n} times")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hosts_file(path: Path, url: str, extra: str = "", hosts: list[str] | None = None) -> Path:
    """A hosts.toml reading the fleet from the Prometheus at `url`."""
    listed = f"hosts = {json.dumps(hosts)}\n" if hosts is not None else ""
    path.write_text(
        f'{listed}[source]\nkind = "prometheus"\nurl = "{url}"\n'
        f"scrape_interval_s = {SCRAPE_S:g}\nquery_interval_s = 1\n{extra}"
    )
    return path
