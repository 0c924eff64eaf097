"""Who owns a GPU process: its user and its job, read from /proc on the host (docs/jobs.md).

NVML names the processes on a GPU by host pid and nothing more. The owner is read here:

- the user: the real uid on the `Uid:` line of /proc/PID/status, named by the host's user
  database (pwd); no name when the uid has none there;
- the job, first from /proc/PID/cgroup, which anyone may read and which the scheduler wrote:
  Slurm's cgroup plugins put the job and step in the path (v1 `/slurm/uid_U/job_J/step_S/...`,
  v2 `/system.slice/slurmstepd.scope/job_J/step_S/...`), the kubelet puts the pod's UID and the
  container's id there (cgroupfs driver `/kubepods/<qos>/pod<UID>/<id>`, systemd driver
  `kubepods-<qos>-pod<UID_>.slice/cri-containerd-<id>.scope`); Slurm is tried first because a
  Slurm whose slurmd runs in a pod nests its jobs inside the pod's cgroup, and the job is the
  owner that matters. Failing that, SLURM_JOB_ID from /proc/PID/environ, which only root or the
  process's own user may read (proctrack/linuxproc leaves no job cgroup); a refusal there is
  simply no attribution.

Every file is read with a size cap and parsed as untrusted text: ids must match what Slurm and
Kubernetes write or they are dropped, so garbage or a hostile process's environment can never
raise, grow a message, or break the collector's bounds (core/model.py ShortText).

Reading costs a handful of small files per process, so results are cached per pid and keyed on
the process's start time (field 22 of /proc/PID/stat), which changes when the kernel reuses the
pid. The backend calls retain() after each read of the processes, which drops the pids that
read did not list: the cache never outgrows one read's processes. The same cache entry holds
what a subclass keeps between reads (procinfo.py's CPU time), so a process is keyed once.
Nothing here asks a scheduler: the collector enriches jobs for the whole fleet at once.

This module imports nothing but the standard library, not even the agent's other modules: a
test runs it alone, as an unprivileged user would.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
from typing import Any, Dict, Iterable

Json = Dict[str, Any]

PROC_ROOT = "/proc"
KUBELET_ROOT = "/var/lib/kubelet"

# Size caps. status, stat and cgroup are a few hundred bytes (cgroup v1 lists ~13 hierarchies);
# an environment is bounded by the kernel's ARG_MAX share, and 1 MiB holds any sane one.
_SMALL_FILE = 64 * 1024
_ENVIRON = 1024 * 1024
_TEXT_MAX = 256  # core/model.py ShortText: a longer value would make the collector refuse the line

# Slurm: the v1 hierarchy `/slurm/` (`/slurm_<node>/` with several slurmd per host) and the v2
# scope `slurmstepd.scope` (`<node>_slurmstepd.scope`), then `uid_U/` (v1 only), `job_J`, and
# `step_S` below it where the process runs in a step.
_SLURM_PATH = re.compile(
    r"(?:^|/)(?:slurm(?:_[^/]+)?|(?:[^/]+_)?slurmstepd\.scope)/(?:uid_\d+/)?"
    r"job_(\d{1,20})(?:/step_([^/]{1,64}))?(?:/|$)"
)
# Step names Slurm writes: numbered steps (a heterogeneous component as `0+1`), and the batch
# script, the extern step (pam_slurm_adopt, X11) and salloc's interactive step.
_SLURM_STEP = re.compile(r"^(?:\d{1,10}(?:\+\d{1,10})?|batch|extern|interactive)$")
# `\Z`, not `$`: `$` also matches before a final line break, which would pass "4242\n" as an id.
_DIGITS = re.compile(rb"^\d{1,20}\Z")

# Kubernetes, cgroupfs driver: `kubepods/[burstable|besteffort/]pod<UID>/<container id>`
# (Guaranteed pods sit directly under kubepods).
_K8S_CGROUPFS = re.compile(
    r"(?:^|/)kubepods(?:/(?:burstable|besteffort))?/pod([0-9a-fA-F_-]{32,36})"
    r"(?:/([0-9a-f]{12,64})(?:/|$))?"
)
# Kubernetes, systemd driver: `kubepods-[<qos>-]pod<UID with _ for ->.slice/<runtime>-<id>.scope`
# (a kubelet with another cgroup root, as kind runs it, prefixes `kubelet-`).
_K8S_SYSTEMD = re.compile(
    r"kubepods(?:-(?:burstable|besteffort))?-pod([0-9a-fA-F_]{32,36})\.slice"
    r"(?:/(?:cri-containerd|docker|crio)-([0-9a-f]{12,64})\.scope)?"
)
_POD_UID = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})\Z"
)
# A namespace is a DNS label; a pod's hostname (its name, unless spec.hostname says otherwise)
# is a DNS label too, as kubelet truncates longer names to 63.
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _read(path: str, limit: int) -> bytes | None:
    """Up to `limit` bytes of a file; None when it cannot be read (gone, refused, odd)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except (OSError, ValueError):
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- parsing: pure functions of a file's bytes ---------------------------------------------------


def start_time(stat: bytes) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), as text.

    The process name (field 2) may hold spaces and parentheses, so fields are counted from
    the last `)`: the state after it is field 3."""
    _, sep, rest = stat.rpartition(b")")
    if not sep:
        return None
    fields = rest.split()
    if len(fields) < 20 or not _DIGITS.match(fields[19]):
        return None
    return fields[19].decode("ascii")


def real_uid(status: bytes) -> int | None:
    """The real uid from /proc/PID/status (`Uid:\\treal\\teffective\\tsaved\\tfs`)."""
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) >= 2 and _DIGITS.match(parts[1]):
                uid = int(parts[1])
                return uid if uid < 1 << 32 else None
            return None
    return None


def _cgroup_paths(cgroup: bytes) -> list[str]:
    """The paths of /proc/PID/cgroup's lines (`hierarchy-id:controllers:path`): one `0::` line
    under cgroup v2, one per hierarchy under v1 (and both under the hybrid layout)."""
    paths = []
    for line in _text(cgroup).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths.append(parts[2])
    return paths


def slurm_from_cgroup(cgroup: bytes) -> Json | None:
    """The Slurm job (and step) of a /proc/PID/cgroup, or None."""
    for path in _cgroup_paths(cgroup):
        m = _SLURM_PATH.search(path)
        if m:
            job: Json = {"kind": "slurm", "id": m.group(1)}
            step = m.group(2)
            if step is not None and _SLURM_STEP.match(step):
                job["step"] = step
            job["source"] = "cgroup"
            return job
    return None


def pod_uid(raw: str) -> str | None:
    """A pod UID as the API shows it: the systemd driver writes `_` for `-`."""
    uid = raw.replace("_", "-").lower()
    if _POD_UID.match(uid):
        return uid
    return None


def k8s_from_cgroup(cgroup: bytes) -> Json | None:
    """The Kubernetes pod (and container id) of a /proc/PID/cgroup, or None."""
    for path in _cgroup_paths(cgroup):
        m = _K8S_SYSTEMD.search(path) or _K8S_CGROUPFS.search(path)
        if not m:
            continue
        uid = pod_uid(m.group(1))
        if uid is None:
            continue
        job: Json = {"kind": "k8s", "id": uid}
        if m.group(2):
            job["container"] = m.group(2)
        job["source"] = "cgroup"
        return job
    return None


def job_from_id(text: str) -> Json | None:
    """The job that an id alone names, with no process to read it from: the job label of a
    GPU's series in Prometheus (dcgm-exporter's `hpc_job`, which a Slurm prolog writes into
    DCGM's job mapping files, or gputui exporter's `job_id`). It is held to the rules of the
    ids read from /proc: a Slurm job id is digits, a pod UID hex in UUID form; surrounding
    white space is dropped (a mapping file's line ending), and anything else (a name, markup,
    an escape sequence, a list) names no job."""
    raw = text.strip(" \t\r\n")
    if not raw.isascii():  # every id is ASCII: no look-alike digit or letter passes
        return None
    if _DIGITS.match(raw.encode("ascii")):
        return {"kind": "slurm", "id": raw, "source": "label"}
    uid = pod_uid(raw)
    if uid is not None:
        return {"kind": "k8s", "id": uid, "source": "label"}
    return None


def job_from_cgroup(cgroup: bytes) -> Json | None:
    """Slurm first: a Slurm whose slurmd runs in a pod nests its job cgroups in the pod's."""
    return slurm_from_cgroup(cgroup) or k8s_from_cgroup(cgroup)


def environ_values(environ: bytes, names: Iterable[bytes]) -> dict[bytes, bytes]:
    """The values of `names` in a NUL-separated /proc/PID/environ (the first of each)."""
    wanted = {name + b"=" for name in names}
    out: dict[bytes, bytes] = {}
    for entry in environ.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key + b"=" in wanted and key not in out:
            out[key] = value
    return out


def slurm_from_environ(environ: bytes) -> Json | None:
    """The Slurm job from a process's environment: SLURM_JOB_ID (SLURM_JOBID before 2.x
    renamed it) and SLURM_STEP_ID. Array tasks carry their own job id here too, the id the
    cgroup path and `scontrol requeue` use."""
    env = environ_values(environ, (b"SLURM_JOB_ID", b"SLURM_JOBID", b"SLURM_STEP_ID"))
    job_id = env.get(b"SLURM_JOB_ID") or env.get(b"SLURM_JOBID")
    if job_id is None or not _DIGITS.match(job_id):
        return None
    job: Json = {"kind": "slurm", "id": job_id.decode("ascii")}
    step = env.get(b"SLURM_STEP_ID")
    if step is not None and _DIGITS.match(step) and len(step) <= 10:
        job["step"] = step.decode("ascii")
    job["source"] = "environ"
    return job


def dns_label(data: bytes) -> str | None:
    text = _text(data).strip()
    return text if _DNS_LABEL.match(text) else None


# -- the attributor --------------------------------------------------------------------------------


class Seen:
    """What the cache keeps of one process: its start time (field 22 of its stat, the key that
    tells a reused pid apart), the fields read once, and `extra`, a subclass's own state between
    reads of the same process."""

    __slots__ = ("extra", "fields", "started")

    def __init__(self, started: str, fields: Json) -> None:
        self.started = started
        self.fields = fields
        self.extra: Any = None


class ProcAttribution:
    """The `uid`, `user` and `job` fields of a GPU process, read from a /proc tree.

    Call it with a pid; it returns the fields it could establish (possibly none) and never
    raises. `proc` and `kubelet` name the roots to read, so tests can point them at fixture
    trees; `node_name` is this host's name (a pod on the host network has it as HOSTNAME,
    which then names no pod)."""

    def __init__(
        self,
        proc: str = PROC_ROOT,
        kubelet: str = KUBELET_ROOT,
        node_name: str | None = None,
    ) -> None:
        self.proc = proc
        self.kubelet = kubelet
        self.node_name = node_name if node_name is not None else socket.gethostname()
        self._cache: dict[int, Seen] = {}  # pid -> what was read of it
        self._users: dict[int, str | None] = {}  # uid -> name, for the cached pids' uids
        self.reads = 0  # processes read from /proc, not from the cache (tests count them)

    def __call__(self, pid: int) -> Json:
        try:
            return self._attribute(int(pid))
        except Exception:  # one odd process must not cost the sample its process list
            return {}

    def retain(self, pids: Iterable[int]) -> None:
        """Forget every pid but `pids` (the processes of the read that just ended)."""
        keep = set(pids)
        self._cache = {pid: seen for pid, seen in self._cache.items() if pid in keep}
        uids = {seen.fields.get("uid") for seen in self._cache.values()}
        self._users = {uid: name for uid, name in self._users.items() if uid in uids}

    def _attribute(self, pid: int) -> Json:
        if pid <= 0:
            return {}
        base = os.path.join(self.proc, str(pid))
        stat = _read(os.path.join(base, "stat"), _SMALL_FILE)
        started = start_time(stat) if stat is not None else None
        if stat is None or started is None:
            return {}  # the process has ended (or this /proc is not one): nothing to keep
        seen = self._cache.get(pid)
        if seen is None or seen.started != started:
            self.reads += 1
            fields = self._read_fields(base)
            # The pid may have been reused while its files were read: keep only a consistent
            # read.
            stat = _read(os.path.join(base, "stat"), _SMALL_FILE)
            if stat is None or start_time(stat) != started:
                self._cache.pop(pid, None)
                return {}
            seen = self._cache[pid] = Seen(started, fields)
        current = self._current(seen, base, stat)
        return {**seen.fields, **current} if current else seen.fields

    def _current(self, seen: Seen, base: str, stat: bytes) -> Json:
        """Fields read afresh at every call (none here: an owner does not change); `stat` is
        the process's stat file as just read."""
        return {}

    def _read_fields(self, base: str) -> Json:
        fields: Json = {}
        status = _read(os.path.join(base, "status"), _SMALL_FILE)
        uid = real_uid(status) if status is not None else None
        if uid is not None:
            fields["uid"] = uid
            user = self._user(uid)
            if user is not None:
                fields["user"] = user
        job = self._job(base)
        if job is not None:
            fields["job"] = job
        return fields

    def _user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                name: str | None = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError, ValueError):
                name = None  # a uid the host's user database does not name
            if name is not None and not 0 < len(name) <= _TEXT_MAX:
                name = None
            self._users[uid] = name
        return self._users[uid]

    def _job(self, base: str) -> Json | None:
        cgroup = _read(os.path.join(base, "cgroup"), _SMALL_FILE)
        job = job_from_cgroup(cgroup) if cgroup is not None else None
        if job is not None and job["kind"] == "k8s":
            self._pod_details(base, job)
            return job
        if job is not None:
            return job
        environ = _read(os.path.join(base, "environ"), _ENVIRON)
        return slurm_from_environ(environ) if environ is not None else None

    def _pod_details(self, base: str, job: Json) -> None:
        """Namespace and name, where the host's files give them reliably."""
        namespace = self._pod_namespace(job["id"])
        if namespace is not None:
            job["namespace"] = namespace
        environ = _read(os.path.join(base, "environ"), _ENVIRON)
        if environ is not None:
            # A container's HOSTNAME is its pod's hostname: the pod's name unless the pod sets
            # spec.hostname, and the node's own name for a pod on the host network.
            raw = environ_values(environ, (b"HOSTNAME",)).get(b"HOSTNAME")
            name = dns_label(raw) if raw is not None else None
            if name is not None and name != self.node_name.split(".")[0].lower():
                job["name"] = name

    def _pod_namespace(self, uid: str) -> str | None:
        """The namespace file kubelet writes into a pod's service-account volume (projected
        since Kubernetes 1.22, a secret volume before); absent when the pod does not mount
        one or the agent may not read kubelet's directory."""
        volumes = os.path.join(self.kubelet, "pods", uid, "volumes")
        for kind in ("kubernetes.io~projected", "kubernetes.io~secret"):
            folder = os.path.join(volumes, kind)
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            for name in names:
                data = _read(os.path.join(folder, name, "namespace"), _SMALL_FILE)
                namespace = dns_label(data) if data is not None else None
                if namespace is not None:
                    return namespace
        return None
