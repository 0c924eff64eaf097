"""The scenario schema of the simulator, and its validation (docs/scenarios.md).

A scenario is a plain dict (TOML on the collector side, JSON on the agent's command line, so
hosts with Python 3.8 and no tomllib can run it). validate_scenario() is the single definition
of the schema: the agent calls it before simulating and the collector calls it when it loads a
file, so both reject the same mistakes with the same messages.

Besides its board, workload and faults, a host's scenario may list the jobs on its GPUs
(`job`): a fleet's jobs span hosts, so the collector decides them for the whole fleet and
hands each host its share (gputui/collect/sim_jobs.py, played by agent/simjobs.py).
"""

from __future__ import annotations

import re
from typing import Any, Callable

MODELS = ("H100-SXM", "A100-SXM", "V100-SXM2")
WORKLOADS = ("training", "inference", "idle")
# Driver branches the simulated NVML behaves as: 580 has every call and field the agent uses;
# 570 lacks the three newer held-clock counters; 470 also predates NVML's v2 memory info, the
# clock-event reasons call and the recovery-action field.
DRIVERS = ("580", "570", "470")

# Faults of the agent process itself, not of a GPU: they take no `gpus`.
PROCESS_FAULTS = ("agent_crash", "hang")
# Faults of the whole host: `gpus` may be left out, meaning every GPU of the host.
HOST_FAULTS = ("slow_host", "psu_brake", "cooling_decay")
# Slow drifts: rates per simulated day, so they mean the same at any `speed` or step.
DRIFT_FAULTS = ("ecc_creep", "pcie_replay_creep", "remap_creep", "cooling_decay", "psu_brake")
# How much faster than real time a fast-forwarded host runs: up to a day a second.
MAX_SPEED = 86_400.0
# What slows a `slow_host`: nothing the GPUs report (a slow network path, a bad host memory
# channel, a noisy neighbour), or an enforced power limit set below the board's TDP.
SLOW_HOST_CAUSES = ("none", "power_cap")

_Check = Callable[[str, Any], Any]


def _number(lo: float, hi: float, lo_open: bool = False) -> _Check:
    def check(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        bad_lo = value <= lo if lo_open else value < lo
        if bad_lo or value > hi:
            rel = ">" if lo_open else ">="
            raise ValueError(f"{where}: expected a number {rel} {lo} and <= {hi}, got {value!r}")
        return float(value)

    return check


def _integer(lo: int, hi: int) -> _Check:
    def check(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"{where}: expected an integer from {lo} to {hi}, got {value!r}")
        return value

    return check


def _choice(options: tuple[int, ...]) -> _Check:
    def check(where: str, value: Any) -> int:
        if isinstance(value, bool) or value not in options:
            raise ValueError(f"{where}: expected one of {list(options)}, got {value!r}")
        return int(value)

    return check


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def _word(options: tuple[str, ...]) -> _Check:
    def check(where: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{where}: expected one of {list(options)}, got {value!r}")
        return value

    return check


# Per fault kind: its own keys, each with (checker, default). A default of None means the key
# is optional and absent when not given; `...` marks a required key.
_REQUIRED: Any = ...
FAULT_KEYS: dict[str, dict[str, tuple[_Check, Any]]] = {
    "xid": {"xid": (_integer(1, 1000), _REQUIRED)},
    "ecc_dbe": {},
    "ecc_sbe_storm": {"rate": (_number(0, 1e6, lo_open=True), 200.0)},
    "thermal_runaway": {"rise_c": (_number(0, 100, lo_open=True), 30.0)},
    "power_brake": {},
    "pcie_downgrade": {
        "gen": (_integer(1, 6), None),
        "width": (_choice((1, 2, 4, 8, 16)), 8),
        "replay_rate": (_number(0, 1e6), 5.0),
    },
    "nvlink_errors": {
        "rate": (_number(0, 1e6), 20.0),
        "links_down": (_integer(0, 18), 0),
    },
    "row_remap_pending": {},
    "row_remap_failure": {},
    "gpu_lost": {},
    "straggler": {"factor": (_number(0, 1, lo_open=True), 0.6)},
    "slow_host": {
        "factor": (_number(0, 1, lo_open=True), 0.8),
        "cause": (_word(SLOW_HOST_CAUSES), "none"),
    },
    "agent_crash": {"exit_code": (_integer(1, 255), 1)},
    "hang": {},
    # Slow drifts (docs/scenarios.md, "Slow drifts"): what prevention looks for over days.
    "ecc_creep": {
        "per_day": (_number(0, 1e9, lo_open=True), 20.0),
        "doubling_days": (_number(0, 3650, lo_open=True), None),
    },
    "pcie_replay_creep": {
        "per_day": (_number(0, 1e9, lo_open=True), 50.0),
        "doubling_days": (_number(0, 3650, lo_open=True), None),
    },
    "remap_creep": {
        "per_day": (_number(0, 10_000, lo_open=True), 0.5),
        "doubling_days": (_number(0, 3650, lo_open=True), None),
        "stuck_pending": (_flag, False),
    },
    "cooling_decay": {
        "c_per_day": (_number(0, 100), 1.0),
        "offset_c": (_number(0, 100), 0.0),
        "max_rise_c": (_number(0, 100, lo_open=True), 40.0),
    },
    "psu_brake": {
        "per_day": (_number(0, 86_400, lo_open=True), 6.0),
        "seconds": (_number(0, 86_400, lo_open=True), 8.0),
    },
}
FAULT_KINDS = tuple(FAULT_KEYS)
_COMMON_FAULT_KEYS = ("kind", "gpus", "at", "duration")
_TOP_KEYS = (
    "name",
    "description",
    "gpus",
    "model",
    "workload",
    "driver",
    "fault",
    "job",
    "requeue_file",
    "speed",
)

# The jobs a host runs ([[job]]): the collector assigns them across a simulated fleet.
JOB_KINDS = ("slurm", "k8s")
JOB_SOURCES = ("cgroup", "environ")
JOB_WORKLOADS = ("training", "inference")
_JOB_KEYS = ("kind", "id", "gpus", "workload", "uid", "user", "source", "heartbeat", "first_rank")
_JOB_KIND_KEYS = {"slurm": ("step",), "k8s": ("namespace", "name", "container")}
# Each text as Slurm, Kubernetes and the user database write it, so a simulated host never
# reports what the real agent's attribution would refuse to read from a real one.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_JOB_TEXT = {
    "slurm.id": (r"\d{1,20}(?:_\d{1,10})?", "a Slurm job id such as 4242 or 4242_7"),
    "k8s.id": (
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "a pod UID (8-4-4-4-12 lowercase hex)",
    ),
    "step": (
        r"\d{1,10}|batch|extern|interactive",
        "a step: a number, batch, extern or interactive",
    ),
    "namespace": (_DNS_LABEL, "a DNS label"),
    "name": (_DNS_LABEL, "a DNS label"),
    "container": (r"[0-9a-f]{12,64}", "a container id (12 to 64 lowercase hex)"),
    "user": (r"[a-z_][a-z0-9_.-]{0,31}", "a user name"),
}


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


def _unknown_keys(where: str, given: Any, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unknown key {extra[0]!r} (expected one of {list(allowed)})")


def _validate_fault(where: str, raw: Any, n_gpus: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a table, got {raw!r}")
    kind = raw.get("kind")
    if kind not in FAULT_KEYS:
        raise ValueError(f"{where}.kind: expected one of {list(FAULT_KINDS)}, got {kind!r}")
    own = FAULT_KEYS[kind]
    _unknown_keys(where, raw, _COMMON_FAULT_KEYS + tuple(own))
    if "at" not in raw:
        raise ValueError(f"{where}.at: missing (seconds from the start)")
    fault: dict[str, Any] = {"kind": kind, "at": _number(0, 1e9)(f"{where}.at", raw["at"])}
    if "duration" in raw:
        fault["duration"] = _number(0, 1e9, lo_open=True)(f"{where}.duration", raw["duration"])
    gpus = raw.get("gpus")
    if kind in PROCESS_FAULTS:
        if gpus not in (None, []):
            raise ValueError(f"{where}.gpus: {kind} is a fault of the agent process, not a GPU")
        fault["gpus"] = []
    elif gpus is None and kind in HOST_FAULTS:
        fault["gpus"] = list(range(n_gpus))
    else:
        if gpus is None:
            raise ValueError(f"{where}.gpus: missing (a list of GPU indices)")
        if not isinstance(gpus, list) or not gpus:
            raise ValueError(f"{where}.gpus: expected a non-empty list of GPU indices")
        check = _integer(0, n_gpus - 1)
        fault["gpus"] = sorted({check(f"{where}.gpus[{i}]", g) for i, g in enumerate(gpus)})
    for key, (check, default) in own.items():
        if key in raw:
            fault[key] = check(f"{where}.{key}", raw[key])
        elif default is _REQUIRED:
            raise ValueError(f"{where}.{key}: missing (required for kind {kind!r})")
        elif default is not None:
            fault[key] = default
    return fault


def _job_text(where: str, key: str, value: Any) -> str:
    pattern, expected = _JOB_TEXT[key]
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
    return value


def _validate_job(
    where: str, raw: Any, host: dict[str, Any], taken: dict[int, str]
) -> dict[str, Any]:
    """One [[job]] table, checked against the host (`taken`: GPU -> the job that holds it)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a table, got {raw!r}")
    kind = raw.get("kind")
    if kind not in JOB_KINDS:
        raise ValueError(f"{where}.kind: expected one of {list(JOB_KINDS)}, got {kind!r}")
    _unknown_keys(where, raw, _JOB_KEYS + _JOB_KIND_KEYS[kind])
    if "id" not in raw:
        raise ValueError(f"{where}.id: missing (the job's id)")
    gpus = raw.get("gpus")
    if not isinstance(gpus, list) or not gpus:
        raise ValueError(f"{where}.gpus: expected a non-empty list of GPU indices")
    check = _integer(0, host["gpus"] - 1)
    indices = sorted({check(f"{where}.gpus[{i}]", g) for i, g in enumerate(gpus)})
    for index in indices:
        if index in taken:
            raise ValueError(f"{where}.gpus: GPU {index} already runs {taken[index]}")
        taken[index] = where
    default_workload = host["workload"] if host["workload"] in JOB_WORKLOADS else "training"
    job: dict[str, Any] = {
        "kind": kind,
        "id": _job_text(f"{where}.id", f"{kind}.id", raw["id"]),
        "gpus": indices,
        "workload": _word(JOB_WORKLOADS)(
            f"{where}.workload", raw.get("workload", default_workload)
        ),
        "uid": _integer(0, (1 << 32) - 1)(f"{where}.uid", raw.get("uid", 1000)),
        "source": _word(JOB_SOURCES)(f"{where}.source", raw.get("source", "cgroup")),
    }
    for key in ("user", *_JOB_KIND_KEYS[kind]):
        if key in raw:
            job[key] = _job_text(f"{where}.{key}", key, raw[key])
    # A training job's ranks write heartbeats (simbeats.py); its first GPU here is first_rank.
    beats = raw.get("heartbeat", False)
    if not isinstance(beats, bool):
        raise ValueError(f"{where}.heartbeat: expected true or false, got {beats!r}")
    if beats:
        job["heartbeat"] = True
        job["first_rank"] = _integer(0, 1 << 24)(f"{where}.first_rank", raw.get("first_rank", 0))
    elif "first_rank" in raw:
        raise ValueError(f"{where}.first_rank: only with heartbeat = true")
    return job


def validate_scenario(d: Any) -> dict[str, Any]:
    """A checked, normalised copy of scenario `d`, with defaults filled, faults sorted by
    start time and jobs checked against the GPUs (one job a GPU). Raises ValueError whose
    message starts with the offending key."""
    if not isinstance(d, dict):
        raise ValueError(f"scenario: expected a table, got {type(d).__name__}")
    _unknown_keys("scenario", d, _TOP_KEYS)
    out: dict[str, Any] = {
        "name": _text("name", d.get("name", "unnamed")),
        "description": _text("description", d.get("description", "")),
        "gpus": _integer(1, 64)("gpus", d.get("gpus", 8)),
        "model": d.get("model", "H100-SXM"),
        "workload": d.get("workload", "training"),
        "driver": d.get("driver", DRIVERS[0]),
    }
    if out["model"] not in MODELS:
        raise ValueError(f"model: expected one of {list(MODELS)}, got {out['model']!r}")
    if out["workload"] not in WORKLOADS:
        raise ValueError(f"workload: expected one of {list(WORKLOADS)}, got {out['workload']!r}")
    if out["driver"] not in DRIVERS:
        raise ValueError(f"driver: expected one of {list(DRIVERS)}, got {out['driver']!r}")
    raw_faults = d.get("fault", [])
    if not isinstance(raw_faults, list):
        raise ValueError("fault: expected a list of tables ([[fault]] in TOML)")
    faults: list[dict[str, Any]] = [
        _validate_fault(f"fault[{i}]", f, out["gpus"]) for i, f in enumerate(raw_faults)
    ]
    out["fault"] = sorted(faults, key=lambda f: f["at"])
    raw_jobs = d.get("job", [])
    if not isinstance(raw_jobs, list):
        raise ValueError("job: expected a list of tables ([[job]] in TOML)")
    taken: dict[int, str] = {}
    out["job"] = [_validate_job(f"job[{i}]", j, out, taken) for i, j in enumerate(raw_jobs)]
    if "requeue_file" in d:
        out["requeue_file"] = _text("requeue_file", d["requeue_file"])
    if "speed" in d:
        out["speed"] = _number(1, MAX_SPEED)("speed", d["speed"])
    return out
