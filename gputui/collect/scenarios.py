"""Simulator scenarios on the collector side: TOML files in, validated dicts out.

The collector reads TOML (tomllib) and hands the agent JSON, so a host with Python 3.8 (no
tomllib) can still run a scenario. The schema lives in the agent (gputui.agent.scenario) so
that both ends reject the same mistakes with the same words (docs/scenarios.md).
"""

from __future__ import annotations

import copy
import random
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from gputui.agent.scenario import MODELS, WORKLOADS, validate_scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

DEMO_MIX = "demo"
# The prevention demo's fleet: healthy hosts and hosts drifting toward a failure over days.
DRIFT_MIX = "drift"


class ScenarioError(Exception):
    """A scenario that cannot be used; the message is one line: file, key, what was expected."""


def _packaged() -> dict[str, bool]:
    """Each packaged file's name and whether it is a fleet mix ([mix]) rather than a host."""
    folder = resources.files("gputui") / "scenarios"
    out = {}
    for p in folder.iterdir():
        if p.name.endswith(".toml"):
            data = tomllib.loads(p.read_text(encoding="utf-8"))
            out[p.name[: -len(".toml")]] = "mix" in data
    return out


def scenario_names() -> list[str]:
    """Names of the packaged host scenarios (the fleet mixes, `demo` and `drift`, excluded)."""
    return sorted(name for name, mix in _packaged().items() if not mix)


def mix_names() -> list[str]:
    """Names of the packaged fleet mixes (demo_assignment's `mix`)."""
    return sorted(name for name, mix in _packaged().items() if mix)


def _read(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(label for messages, decoded TOML) of a packaged name or a file path."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".toml")
    if looks_like_path or Path(name_or_path).is_file():
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
        label = str(path)
    else:
        resource = resources.files("gputui") / "scenarios" / f"{name_or_path}.toml"
        if not resource.is_file():
            known = ", ".join([*scenario_names(), *mix_names()])
            raise ScenarioError(f"unknown scenario {name_or_path!r} (packaged: {known})")
        text = resource.read_text(encoding="utf-8")
        label = f"{name_or_path}.toml"
    try:
        return label, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label}: not valid TOML: {exc}") from None


def is_fleet_mix(name_or_path: str) -> bool:
    """Whether the named scenario file assigns scenarios across hosts ([mix]) like `demo`."""
    return "mix" in _read(name_or_path)[1]


def load_scenario(name_or_path: str) -> dict[str, Any]:
    """The validated scenario named (packaged) or at a path."""
    label, data = _read(name_or_path)
    if "mix" in data:
        raise ScenarioError(f"{label}: is a fleet mix (it has [mix]), not a host scenario")
    try:
        return validate_scenario(data)
    except ValueError as exc:
        raise ScenarioError(f"{label}: {exc}") from None


def _weights(
    label: str, data: dict[str, Any], key: str, allowed: tuple[str, ...]
) -> dict[str, float]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{label}: [{key}]: expected a table of name = weight")
    out: dict[str, float] = {}
    for name, weight in table.items():
        if name not in allowed:
            raise ScenarioError(f"{label}: {key}.{name}: expected one of {list(allowed)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ScenarioError(f"{label}: {key}.{name}: expected a weight >= 0, got {weight!r}")
        out[name] = float(weight)
    return out


def _shares(n: int, weights: dict[str, float]) -> list[str]:
    """`n` names in proportion to `weights` (largest remainder), in a fixed order: a fleet of
    ten with 70% healthy gets seven healthy hosts, not "about seven"."""
    total = sum(weights.values())
    if n <= 0 or total <= 0:
        return []
    exact = {name: n * w / total for name, w in weights.items()}
    counts = {name: int(x) for name, x in exact.items()}
    left = n - sum(counts.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[:left]:
        counts[name] += 1
    return [name for name in sorted(counts) for _ in range(counts[name])]


def demo_assignment(
    n_hosts: int, seed: int, mix: str = DEMO_MIX
) -> list[tuple[str, dict[str, Any]]]:
    """Host names (sim-001, ...) and the concrete scenario of each, for a simulated fleet.

    Deterministic for (n_hosts, seed, mix file): which host gets which scenario, its GPU
    model, its workload and the offsets of its faults all come from random.Random(seed).
    """
    label, data = _read(mix)
    scenarios = scenario_names()
    weights = _weights(label, data, "mix", tuple(scenarios))
    if not weights or sum(weights.values()) <= 0:
        raise ScenarioError(f"{label}: [mix]: expected at least one scenario with weight > 0")
    models = _weights(label, data, "models", MODELS)
    workloads = _weights(label, data, "workloads", WORKLOADS)
    timing = data.get("timing", {})
    max_offset = timing.get("max_offset_s", 0.0) if isinstance(timing, dict) else None
    if isinstance(max_offset, bool) or not isinstance(max_offset, (int, float)) or max_offset < 0:
        raise ScenarioError(f"{label}: timing.max_offset_s: expected seconds >= 0")
    rng = random.Random(seed)
    names = _shares(n_hosts, weights)
    rng.shuffle(names)
    model_names = _shares(n_hosts, models) if models else []
    rng.shuffle(model_names)
    loaded = {name: load_scenario(name) for name in set(names)}
    width = max(3, len(str(n_hosts)))
    out = []
    for i, name in enumerate(names):
        sc = copy.deepcopy(loaded[name])
        if model_names:
            sc["model"] = model_names[i]
        if sc["fault"]:
            offset = rng.uniform(0.0, float(max_offset))
            for fault in sc["fault"]:
                fault["at"] = round(fault["at"] + offset, 1)
        elif workloads:
            sc["workload"] = rng.choices(list(workloads), weights=list(workloads.values()))[0]
        out.append((f"sim-{i + 1:0{width}d}", validate_scenario(sc)))
    return out


SPARE_WORKLOAD = "idle"  # a spare waits for work


def spare_scenario(scenario: dict[str, Any]) -> dict[str, Any]:
    """`scenario`'s host as a spare: the same GPUs, no fault, no work."""
    spare = copy.deepcopy(scenario)
    spare.update(
        name="healthy",
        description="A spare node: healthy and idle, waiting to be brought in.",
        workload=SPARE_WORKLOAD,
        fault=[],
        job=[],
    )
    return validate_scenario(spare)
