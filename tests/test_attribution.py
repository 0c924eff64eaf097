"""Who owns a GPU process (agent/attribution.py): user and job read from /proc on the host.

The cgroup files under tests/fixtures/cgroups/ are in the shapes kubelet and slurmd write (cgroup
v1 and v2, systemd and cgroupfs drivers, every QoS class, containerd, docker and CRI-O, every
Slurm step kind); process trees are built from them in a temporary /proc. The environment
fallback and the user lookup are also checked on real child processes, and the agent's fields
go through the collector's decoder into core.model.GpuProcess.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.agent import attribution
from gputui.agent.attribution import (
    ProcAttribution,
    job_from_cgroup,
    job_from_id,
    slurm_from_environ,
)
from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import Simulation
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import GpuProcess, JobRef, Sample
from tests.agent_sim import FakeClock
from tests.conftest import REQUIRE_SYSTEM, need_program

CGROUPS = Path(__file__).parent / "fixtures" / "cgroups"

U1 = "5f3b8c2e-9a41-4d7e-b6c0-2e8f1a7d9c34"
U2 = "0c9e7d41-3b2a-4f58-8e16-a4d2c7b95e03"
U3 = "e81f4a97-6c3d-4b25-9f0e-71d8a3c6b2f5"
STATIC = "8e1c6b0f3a2d4e5f9071b2c3d4e5f6a7"
C1 = "3f2a9d8c7b6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"
C2 = "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a3f2a"
C3 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"


def pod(uid: str, container: str) -> dict[str, Any]:
    return {"kind": "k8s", "id": uid, "container": container, "source": "cgroup"}


def slurm(job: str, step: str) -> dict[str, Any]:
    return {"kind": "slurm", "id": job, "step": step, "source": "cgroup"}


# The job each fixture file must give (None: a plain process).
EXPECTED: dict[str, dict[str, Any] | None] = {
    "k8s-v2-systemd-containerd-burstable": pod(U1, C1),
    "k8s-v2-systemd-containerd-guaranteed": pod(U2, C2),
    "k8s-v2-systemd-crio-besteffort": pod(U3, C3),
    "k8s-v2-cgroupfs-containerd-burstable": pod(U1, C1),
    "k8s-v2-cgroupfs-containerd-guaranteed": pod(U2, C2),
    "k8s-v2-kind-containerd-besteffort": pod(U3, C3),
    "k8s-v2-systemd-static-pod": pod(STATIC, C1),
    "k8s-v1-systemd-docker-burstable": pod(U1, C1),
    "k8s-v1-systemd-containerd-guaranteed": pod(U2, C2),
    "k8s-v1-cgroupfs-docker-besteffort": pod(U3, C3),
    "k8s-v1-cgroupfs-containerd-guaranteed": pod(U2, C2),
    "slurm-v1-step-0": slurm("4242", "0"),
    "slurm-v1-step-batch": slurm("4243", "batch"),
    "slurm-v1-step-extern": slurm("4244", "extern"),
    "slurm-v1-step-interactive": slurm("4245", "interactive"),
    "slurm-v2-step-0": slurm("4242", "0"),
    "slurm-v2-step-batch": slurm("4243", "batch"),
    "slurm-v2-step-extern": slurm("4244", "extern"),
    "slurm-v2-step-interactive": slurm("4245", "interactive"),
    "slurm-v2-multiple-slurmd": slurm("4246", "3"),
    "slurm-v2-array-task": slurm("4250", "batch"),
    "slurm-v2-in-a-pod": slurm("4247", "0"),
    "plain-v2-user-session": None,
    "plain-v2-docker": None,
    "plain-v2-slurmstepd-itself": None,
    "plain-hybrid-user-session": None,
}


def fixture(name: str) -> bytes:
    return (CGROUPS / name).read_bytes()


# -- a /proc tree ----------------------------------------------------------------------------------


def stat_line(pid: int, start: int | str, comm: str = "python3") -> bytes:
    """/proc/PID/stat with `start` as field 22 (fields 4-21 and 23-52 plausible numbers)."""
    before = ["S"] + [str(n) for n in range(4, 22)]
    after = [str(n) for n in range(23, 53)]
    return f"{pid} ({comm}) {' '.join(before)} {start} {' '.join(after)}\n".encode()


def status_text(uid: int | str) -> bytes:
    return (
        f"Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\n"
        f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n"
    ).encode()


def environ(**env: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())


class Tree:
    """A fake /proc and /var/lib/kubelet under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.kubelet = root / "kubelet"
        self.proc.mkdir()
        self.kubelet.mkdir()

    def process(
        self,
        pid: int,
        *,
        cgroup: bytes = b"0::/user.slice/user-0.slice/session-1.scope\n",
        uid: int | str = 0,
        start: int | str = 1000,
        env: bytes | None = None,
        stat: bytes | None = None,
        status: bytes | None = None,
    ) -> None:
        d = self.proc / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_bytes(stat if stat is not None else stat_line(pid, start))
        (d / "status").write_bytes(status if status is not None else status_text(uid))
        (d / "cgroup").write_bytes(cgroup)
        if env is not None:
            (d / "environ").write_bytes(env)

    def namespace(self, uid: str, text: bytes, kind: str = "kubernetes.io~projected") -> None:
        d = self.kubelet / "pods" / uid / "volumes" / kind / "kube-api-access-x7k2q"
        d.mkdir(parents=True)
        (d / "namespace").write_bytes(text)

    def attribution(self, node_name: str = "gpu-node-01") -> ProcAttribution:
        return ProcAttribution(str(self.proc), str(self.kubelet), node_name=node_name)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def unnamed_uid() -> int:
    """A uid this machine's user database does not name."""
    for uid in range(4_000_000_000, 4_000_001_000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("every uid tried has a name")


# -- cgroup paths ----------------------------------------------------------------------------------


def test_every_fixture_file_has_its_expected_job() -> None:
    files = {p.name for p in CGROUPS.iterdir() if p.name != "README.md"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_cgroup_path_names_the_job(name: str) -> None:
    job = job_from_cgroup(fixture(name))
    assert job == EXPECTED[name]
    if job is not None:  # within the collector's bounds, so the line is never refused
        msgspec.convert(job, JobRef)


@pytest.mark.parametrize(
    "path",
    [
        "0::/system.slice/slurmstepd.scope/job_42abc/step_0",  # not a job id
        "0::/system.slice/slurmd.service",
        "0::/kubepods/burstable/pod../../etc/passwd/abc",  # not a UID
        "0::/kubepods/burstable/podnot-a-uid-at-all-not-a-uid-at-all/" + C1,
        "0::/user.slice/job_4242/step_0",  # job_ outside Slurm's hierarchy
        "4:memory:/docker/" + C1,  # a container, but no pod
    ],
)
def test_lookalike_paths_name_no_job(path: str) -> None:
    assert job_from_cgroup(path.encode()) is None


def test_a_step_name_slurm_does_not_write_keeps_the_job_and_drops_the_step() -> None:
    job = job_from_cgroup(b"0::/system.slice/slurmstepd.scope/job_77/step_$(reboot)/user\n")
    assert job == {"kind": "slurm", "id": "77", "source": "cgroup"}


def test_a_pod_uid_in_capitals_is_shown_as_the_api_shows_it() -> None:
    line = f"0::/kubepods/pod{U1.upper()}/{C1}\n".encode()
    assert job_from_cgroup(line) == pod(U1, C1)


# -- the environment -------------------------------------------------------------------------------


def test_the_environment_names_an_array_task_by_its_own_job_id() -> None:
    env = environ(
        PATH="/usr/bin",
        SLURM_ARRAY_JOB_ID="4242",
        SLURM_ARRAY_TASK_ID="7",
        SLURM_JOB_ID="4250",
        SLURM_STEP_ID="0",
    )
    assert slurm_from_environ(env) == {
        "kind": "slurm",
        "id": "4250",
        "step": "0",
        "source": "environ",
    }


@pytest.mark.parametrize(
    "env",
    [
        environ(SLURM_JOB_ID="42; rm -rf /"),
        environ(SLURM_JOB_ID=""),
        environ(SLURM_JOB_ID="9" * 21),
        environ(SLURM_JOB_ID="42\n"),  # a line break after the digits is no id either
        environ(NOT_SLURM_JOB_ID="42"),
        b"SLURM_JOB_ID",  # no `=`
        b"",
    ],
)
def test_an_environment_without_a_valid_job_id_names_no_job(env: bytes) -> None:
    assert slurm_from_environ(env) is None


def test_a_batch_script_without_a_step_id_is_the_job_alone() -> None:
    assert slurm_from_environ(environ(SLURM_JOBID="17", SLURM_STEP_ID="x")) == {
        "kind": "slurm",
        "id": "17",
        "source": "environ",
    }


# -- a process in a /proc tree ---------------------------------------------------------------------


def test_a_pod_gets_its_namespace_from_kubelet_and_its_name_from_hostname(tree: Tree) -> None:
    tree.process(
        51,
        cgroup=fixture("k8s-v1-systemd-docker-burstable"),
        env=environ(HOSTNAME="trainer-7f9c-0", KUBERNETES_SERVICE_HOST="10.96.0.1"),
    )
    tree.namespace(U1, b"ml-research")
    fields = tree.attribution()(51)
    assert fields == {
        "uid": 0,
        "user": pwd.getpwuid(0).pw_name,
        "job": {**pod(U1, C1), "namespace": "ml-research", "name": "trainer-7f9c-0"},
    }
    assert msgspec.convert({"pid": 51, **fields}, GpuProcess).job.key == f"k8s:{U1}"  # type: ignore[union-attr]


def test_a_pod_on_the_host_network_has_no_name_and_an_old_cluster_a_secret_volume(
    tree: Tree,
) -> None:
    # hostNetwork: HOSTNAME is the node's name, not the pod's.
    tree.process(
        52,
        cgroup=fixture("k8s-v2-cgroupfs-containerd-guaranteed"),
        env=environ(HOSTNAME="gpu-node-01"),
    )
    tree.namespace(U2, b"kube-system\n", kind="kubernetes.io~secret")
    job = tree.attribution(node_name="gpu-node-01.cluster.local")(52)["job"]
    assert job == {**pod(U2, C2), "namespace": "kube-system"}


def test_a_pod_whose_files_are_not_readable_is_named_by_its_uid_alone(tree: Tree) -> None:
    tree.process(53, cgroup=fixture("k8s-v2-systemd-crio-besteffort"))  # no environ file
    tree.namespace(U3, b"Not A Namespace!\n")
    assert tree.attribution()(53)["job"] == pod(U3, C3)


def test_the_cgroup_wins_over_the_environment(tree: Tree) -> None:
    tree.process(54, cgroup=fixture("slurm-v2-step-0"), env=environ(SLURM_JOB_ID="9999"))
    assert tree.attribution()(54)["job"] == slurm("4242", "0")


def test_without_a_job_cgroup_the_environment_names_the_job(tree: Tree) -> None:
    tree.process(
        55,
        cgroup=fixture("plain-hybrid-user-session"),
        env=environ(SLURM_JOB_ID="4251", SLURM_STEP_ID="2"),
    )
    assert tree.attribution()(55)["job"] == {
        "kind": "slurm",
        "id": "4251",
        "step": "2",
        "source": "environ",
    }


def test_a_plain_process_has_its_user_and_no_job(tree: Tree) -> None:
    tree.process(56, cgroup=fixture("plain-v2-docker"), env=environ(HOME="/root"))
    assert tree.attribution()(56) == {"uid": 0, "user": pwd.getpwuid(0).pw_name}


def test_a_uid_without_a_name_is_reported_without_a_user(tree: Tree) -> None:
    uid = unnamed_uid()
    tree.process(57, uid=uid)
    assert tree.attribution()(57) == {"uid": uid}


def test_a_process_that_is_gone_has_no_fields(tree: Tree) -> None:
    assert tree.attribution()(58) == {}


# -- the cache -------------------------------------------------------------------------------------


def test_the_cache_reads_a_process_once_until_its_pid_is_reused(tree: Tree) -> None:
    tree.process(60, cgroup=fixture("slurm-v2-step-0"), start=5000)
    attr = tree.attribution()
    first = attr(60)
    assert attr.reads == 1
    # The same process on another GPU, and on the next slow read: no second read of its files.
    (tree.proc / "60" / "cgroup").write_bytes(fixture("slurm-v2-step-batch"))
    assert attr(60) == first
    attr.retain([60])
    assert attr(60) == first
    assert attr.reads == 1
    # The pid reused by a new process (another start time): read afresh.
    tree.process(60, cgroup=fixture("slurm-v2-step-batch"), start=5100)
    assert attr(60)["job"] == slurm("4243", "batch")
    assert attr.reads == 2


def test_the_cache_keeps_only_the_processes_of_the_last_read(tree: Tree) -> None:
    for pid in (61, 62, 63):
        tree.process(pid, cgroup=fixture("slurm-v1-step-0"))
    attr = tree.attribution()
    for pid in (61, 62, 63):
        attr(pid)
    attr.retain([62])
    assert attr.reads == 3
    attr(62)
    assert attr.reads == 3  # kept
    attr(61)
    assert attr.reads == 4  # dropped, read again


def test_a_pid_reused_while_it_is_read_is_not_cached(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.process(64, start=100)
    attr = tree.attribution()
    real = attr._read_fields

    def reuse_during_read(base: str) -> Any:
        out = real(base)
        (tree.proc / "64" / "stat").write_bytes(stat_line(64, 200))
        return out

    monkeypatch.setattr(attr, "_read_fields", reuse_during_read)
    assert attr(64) == {}
    monkeypatch.setattr(attr, "_read_fields", real)
    assert attr(64)["uid"] == 0  # the new process, read in full
    assert attr.reads == 2


# -- hostile /proc ---------------------------------------------------------------------------------


HOSTILE = [
    b"",
    b"\x00\x01\x02\xff\xfe",
    b"garbage without colons\n" * 50,
    b"0::/system.slice/slurmstepd.scope/job_\xff\xfe/step_0\n",
    "0::/kubepods/pod\u00e9\u00e9\u00e9/abc\n".encode(),
    b"0::" + b"/job_1" * 200_000 + b"\n",  # 1.2 MB: read up to the cap only
    b"0::/kubepods/burstable/pod" + b"f" * 100_000 + b"\n",
]


@pytest.mark.parametrize("content", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_files_never_raise(tree: Tree, content: bytes) -> None:
    tree.process(70, cgroup=content, env=content, stat=stat_line(70, 1), status=content)
    fields = tree.attribution()(70)
    msgspec.convert({"pid": 70, **fields}, GpuProcess)
    assert "uid" not in fields


@pytest.mark.parametrize("content", HOSTILE, ids=range(len(HOSTILE)))
def test_a_pod_with_hostile_environment_and_kubelet_files_keeps_its_uid(
    tree: Tree, content: bytes
) -> None:
    tree.process(75, cgroup=fixture("k8s-v2-systemd-containerd-burstable"), env=content)
    tree.namespace(U1, content)
    fields = tree.attribution()(75)
    assert fields["job"] == pod(U1, C1)


@pytest.mark.parametrize(
    "stat",
    [
        b"",
        b"71 (python3",  # cut short
        b"71 (a) b) S 1 2",  # too few fields
        stat_line(71, "notanumber"),
        b"\xff" * 70_000,
    ],
)
def test_a_stat_file_that_gives_no_start_time_gives_no_fields(tree: Tree, stat: bytes) -> None:
    tree.process(71, cgroup=fixture("slurm-v2-step-0"), stat=stat)
    assert tree.attribution()(71) == {}


def test_a_process_name_with_spaces_and_parentheses_still_gives_the_start_time(tree: Tree) -> None:
    stat = stat_line(72, 4321, comm="x) S 1 2 3 (y")
    assert attribution.start_time(stat) == "4321"
    tree.process(72, cgroup=fixture("slurm-v2-step-0"), stat=stat)
    assert tree.attribution()(72)["job"]["id"] == "4242"


@pytest.mark.parametrize("uid", ["-1", str(1 << 40), "abc", ""])
def test_an_impossible_uid_is_left_out(tree: Tree, uid: str) -> None:
    tree.process(73, uid=uid)
    assert "uid" not in tree.attribution()(73)


def test_an_environment_larger_than_the_cap_is_read_to_the_cap_only(tree: Tree) -> None:
    big = environ(JUNK="x" * (2 << 20), SLURM_JOB_ID="4252")
    tree.process(74, env=big)
    assert "job" not in tree.attribution()(74)  # past 1 MiB: not read, not an error


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_take_any_bytes(data: bytes) -> None:
    for parse in (job_from_cgroup, slurm_from_environ):
        job = parse(data)
        if job is not None:
            msgspec.convert(job, JobRef)
    attribution.real_uid(data)
    attribution.start_time(data)


# -- a job named by its id alone (a Prometheus series' job label) --------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "job_id"),
    [
        ("4242", "slurm", "4242"),
        ("4242\n", "slurm", "4242"),  # a mapping file's line, as read
        (" 4242\r", "slurm", "4242"),
        (U1, "k8s", U1),
        (U1.upper().replace("-", "_"), "k8s", U1),  # as the systemd driver writes it
    ],
)
def test_an_id_alone_names_a_slurm_job_or_a_pod(text: str, kind: str, job_id: str) -> None:
    job = job_from_id(text)
    assert job == {"kind": kind, "id": job_id, "source": "label"}
    msgspec.convert(job, JobRef)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "42; rm -rf /",
        "4242_7",  # an array task goes by its own job id, as its processes' cgroups do
        "9" * 21,
        "-4242",
        "42\n43",  # two lines: a list, not an id
        "\x1b]0;owned\x074242",  # an escape sequence that retitles the terminal
        "\x1b[2J",
        "[bold red]4242[/]",  # Rich markup
        "\u202e4242",  # a bidi override
        "\u0664\u0662",  # Arabic-Indic digits: digits to Unicode, not to Slurm
        "\uff14\uff12",  # full-width digits
        "job-4242",
    ],
)
def test_anything_else_names_no_job(text: str) -> None:
    assert job_from_id(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_label_text_gives_a_job_within_bounds_or_none(text: str) -> None:
    job = job_from_id(text)
    if job is not None:
        ref = msgspec.convert(job, JobRef)
        assert ref.id.isascii() and ref.id.replace("-", "").isalnum()


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("/_-.:0123456789abcdefjobstepkubepodsliceurm\n"), max_size=300)
)
def test_cgroup_like_text_gives_a_job_within_bounds_or_none(text: str) -> None:
    job = job_from_cgroup(text.encode())
    if job is not None:
        msgspec.convert(job, JobRef)


# -- real processes --------------------------------------------------------------------------------


@pytest.fixture
def child_in_a_job() -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "SLURM_JOB_ID": "4253", "SLURM_STEP_ID": "1"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_real_child_is_attributed_to_the_job_in_its_environment(
    child_in_a_job: subprocess.Popen[bytes],
) -> None:
    pid = child_in_a_job.pid
    fields = ProcAttribution()(pid)
    assert fields["uid"] == os.getuid()
    assert fields["user"] == pwd.getpwuid(os.getuid()).pw_name
    # Where the tests themselves run in a job's cgroup (a CI pod), that job wins, as it would
    # for any process on the host; the environment is read all the same.
    own = job_from_cgroup(Path(f"/proc/{pid}/cgroup").read_bytes())
    expected = own or {"kind": "slurm", "id": "4253", "step": "1", "source": "environ"}
    assert fields["job"] == expected
    assert slurm_from_environ(Path(f"/proc/{pid}/environ").read_bytes())["id"] == "4253"  # type: ignore[index]


def _runs_as_nobody(path: str) -> bool:
    try:
        done = subprocess.run([path, "-c", "pass"], user="nobody", capture_output=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


def python_for_nobody() -> str:
    """A python3 that user nobody may run (this test's own may live under /root)."""
    return need_program("python3", sys.executable, "/usr/bin/python3", accept=_runs_as_nobody)


def test_an_environment_the_agent_may_not_read_is_no_attribution_and_no_error(
    child_in_a_job: subprocess.Popen[bytes],
) -> None:
    if os.geteuid() != 0:
        message = "reading another user's process needs root to start it as another user"
        if REQUIRE_SYSTEM:
            pytest.fail(message + " and GPUTUI_REQUIRE_SYSTEM=1 forbids skipping")
        pytest.skip(message)
    own = job_from_cgroup(Path(f"/proc/{child_in_a_job.pid}/cgroup").read_bytes())
    # The agent as an unprivileged user reading root's process: the module alone (it imports
    # only the stdlib, as on a GPU host) run by nobody.
    program = textwrap.dedent(
        f"""
        import json, sys
        ns = {{"__name__": "attribution"}}
        exec(compile(sys.stdin.read(), "attribution.py", "exec"), ns)
        print(json.dumps(ns["ProcAttribution"]()({child_in_a_job.pid})))
        """
    )
    done = subprocess.run(
        [python_for_nobody(), "-c", program],
        input=Path(attribution.__file__).read_text(),
        capture_output=True,
        text=True,
        user="nobody",
        timeout=30,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    fields = json.loads(done.stdout)
    assert fields["uid"] == 0
    assert fields.get("job") == own  # no environment: only what the cgroup says


# -- the backend's hook and the wire ---------------------------------------------------------------


def training_nvml(gpus: int = 2) -> SimNvml:
    sc = {"name": "jobs", "gpus": gpus, "workload": "training"}
    return SimNvml(Simulation(sc, seed=3, clock=FakeClock()))


def processes(sample: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for g in sample["gpus"] for p in g.get("processes", [])]


def test_the_backend_asks_the_hook_on_slow_reads_only_and_keeps_only_its_fields() -> None:
    asked: list[int] = []

    def owner(pid: int) -> dict[str, Any]:
        asked.append(pid)
        return {"uid": 1000, "user": "alice", "job": slurm("4242", "0"), "secret": "dropped"}

    backend = NvmlBackend(training_nvml(), event_thread=False, attribute_process=owner)
    backend.hello()
    backend.sample(slow=False)
    assert asked == []
    procs = processes(backend.sample(slow=True))
    assert len(procs) == 2 and asked == [p["pid"] for p in procs]
    for p in procs:
        assert p["user"] == "alice" and p["job"]["id"] == "4242" and "secret" not in p


def test_a_failing_hook_costs_the_owner_only() -> None:
    def broken(pid: int) -> dict[str, Any]:
        raise RuntimeError("scheduler plugin bug")

    backend = NvmlBackend(training_nvml(), event_thread=False, attribute_process=broken)
    backend.hello()
    procs = processes(backend.sample(slow=True))
    owner = {"uid", "user", "job"}
    assert procs and all(p["pid"] and p["name"] and not owner & set(p) for p in procs)


def test_the_default_hook_reads_proc_and_holds_one_read_of_processes(tree: Tree) -> None:
    nvml = training_nvml()
    backend = NvmlBackend(nvml, event_thread=False, attribute_process=tree.attribution())
    assert isinstance(
        NvmlBackend(training_nvml(), event_thread=False).attribute_process, ProcAttribution
    )
    backend.hello()
    pids = [p["pid"] for p in processes(backend.sample(slow=True))]
    # The simulated pids, laid out in the fake /proc: a pod on GPU 0, a Slurm step on GPU 1.
    tree.process(pids[0], cgroup=fixture("k8s-v2-systemd-containerd-burstable"), uid=unnamed_uid())
    tree.process(pids[1], cgroup=fixture("slurm-v1-step-batch"), env=environ(SLURM_JOB_ID="1"))
    tree.namespace(U1, b"vision")
    tree.process(999_999, cgroup=fixture("slurm-v2-step-0"))
    attr = backend.attribute_process
    assert isinstance(attr, ProcAttribution)
    attr(999_999)  # a process of an earlier read

    sample = backend.sample(slow=True)
    line = json.dumps(
        {"type": "sample", "v": 1, "t": time.time(), "seq": 1, "slow": True, **sample}
    )
    msg = StreamDecoder().decode(line)
    assert isinstance(msg, Sample)
    decoded = [p for g in msg.gpus for p in (g.processes or [])]
    assert [p.pid for p in decoded] == pids
    assert decoded[0].user is None and decoded[0].uid is not None
    assert decoded[0].job == JobRef(kind="k8s", id=U1, container=C1, namespace="vision")
    assert decoded[1].job is not None and decoded[1].job.key == "slurm:4243"
    assert decoded[1].job.step == "batch" and decoded[1].user == pwd.getpwuid(0).pw_name
    assert set(attr._cache) == set(pids)  # the earlier read's process is forgotten
