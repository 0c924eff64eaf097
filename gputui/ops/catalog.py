"""The actions of a hosts file: presets merged with `[actions.NAME]` tables, then checked.

    catalog = load_actions(config)      # ConfigError naming the key, like the hosts file's own
    catalog["drain"].steps[0].command   # CommandTemplate

Merging, lowest first: the preset's own table, the preset's settings table (`[actions.slurm]`:
where, timeout_s, confirm for all its actions), the site's `[actions.drain]` (any key; giving
argv or steps replaces the preset's command). A table whose name is not a preset action is a
custom action and must give argv or steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from gputui.config import Config, ConfigError
from gputui.config.errors import did_you_mean, from_validation_error, join_key
from gputui.ops.presets import PRESETS, Guard, Preset
from gputui.ops.templates import CommandTemplate, TemplateError

LOCAL = "local"
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 86_400.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ALIAS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_NODE_WHERE = ("{node}", "{spare}")
#: Placeholders filled from the jobs on the node's GPUs (gputui/ops/node_jobs.py).
JOB_PLACEHOLDERS = frozenset({"job", "jobs"})

Argv = Annotated[
    list[str],
    msgspec.Meta(description='an array of strings, e.g. ["scontrol", "update", "NodeName={node}"]'),
]
Where = Annotated[
    str,
    msgspec.Meta(description='"local", an SSH alias such as "slurmctl", or "{node}"'),
]
Timeout = Annotated[
    float,
    msgspec.Meta(gt=0, le=MAX_TIMEOUT_S, description="a number of seconds > 0 and <= 86400"),
]
Flag = Annotated[bool, msgspec.Meta(description="true or false")]


class StepTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[[actions.NAME.steps]]`."""

    argv: Argv
    where: Where | None = None
    timeout_s: Timeout | None = None
    for_each_line: Flag = False


Steps = Annotated[
    list[StepTable], msgspec.Meta(description="an array of tables [[actions.NAME.steps]]")
]


class ActionTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[actions.NAME]`."""

    argv: Argv | None = None
    steps: Steps | None = None
    where: Where | None = None
    timeout_s: Timeout | None = None
    confirm: Flag | None = None
    on_fail: Flag | None = None
    on_resume: Flag | None = None
    description: Annotated[str, msgspec.Meta(description="a string")] | None = None


class PresetSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[actions.slurm]`: settings for every action of a preset."""

    where: Where | None = None
    timeout_s: Timeout | None = None
    confirm: Flag | None = None


@dataclass(frozen=True)
class StepDef:
    command: CommandTemplate
    where: str  # "local", an SSH alias, "{node}" or "{spare}"
    timeout_s: float
    for_each_line: bool = False  # run once per output line of the previous step, as {job}


@dataclass(frozen=True)
class ActionDef:
    name: str
    steps: tuple[StepDef, ...]
    confirm: bool = True
    on_fail: bool = False  # run by `node fail` when no --action is given
    on_resume: bool = False  # run by `node resume`
    description: str = ""
    preset: str | None = None
    guard: Guard = "none"

    @property
    def needs(self) -> frozenset[str]:
        """Placeholders the caller must supply ({job} of a per-line step is filled by it)."""
        names: set[str] = set()
        for step in self.steps:
            used = set(step.command.names)
            if step.for_each_line:
                used.discard("job")
            names |= used
            if step.where in _NODE_WHERE:
                names.add(step.where[1:-1])
        return frozenset(names)

    @property
    def names_jobs(self) -> bool:
        """It names the node's jobs: {jobs}, or {job} outside a per-line step."""
        return bool(self.needs & JOB_PLACEHOLDERS)

    @property
    def guard_target(self) -> str:
        """The placeholder naming the node whose scheduler state the guard reads."""
        return "spare" if "spare" in self.needs else "node"


@dataclass(frozen=True)
class ActionCatalog:
    actions: dict[str, ActionDef] = field(default_factory=dict)
    scheduler: Preset | None = None  # the enabled preset that reads scheduler state

    def __contains__(self, name: object) -> bool:
        return name in self.actions

    def __iter__(self) -> Iterator[ActionDef]:
        return iter(self.actions.values())

    def __getitem__(self, name: str) -> ActionDef:
        action = self.actions.get(name)
        if action is None:
            known = ", ".join(self.actions) or "none (see [actions] in docs/operations.md)"
            raise KeyError(
                f"no action {json.dumps(name)}{did_you_mean(name, list(self.actions))}; "
                f"actions: {known}"
            )
        return action

    @property
    def on_fail(self) -> list[ActionDef]:
        return [a for a in self if a.on_fail]

    @property
    def on_resume(self) -> list[ActionDef]:
        return [a for a in self if a.on_resume]

    def state_action(self) -> ActionDef | None:
        sched = self.scheduler
        if sched is None or sched.state_action is None:
            return None
        return self.actions.get(sched.state_action)

    def jobs_action(self) -> ActionDef | None:
        """The action that prints the scheduler's job list (Slurm: `squeue --json`)."""
        sched = self.scheduler
        if sched is None or sched.jobs_action is None:
            return None
        return self.actions.get(sched.jobs_action)


def load_actions(config: Config) -> ActionCatalog:
    """Check the hosts file's actions; ConfigError (naming the key) on any problem."""
    return _Loader(config).load()


class _Loader:
    def __init__(self, config: Config) -> None:
        self.source = str(config.path)
        self.raw = config.actions
        self.presets = config.action_presets

    def error(self, detail: str, key: str) -> ConfigError:
        return ConfigError(detail, source=self.source, key=key)

    def load(self) -> ActionCatalog:
        presets = self._presets()
        merged: dict[str, tuple[dict[str, Any], Preset | None]] = {}
        for preset in presets:
            settings = self._settings(preset)
            for name, table in preset.actions.items():
                merged[name] = ({**table, **settings}, preset)
        for name, table in self.raw.items():
            if name in PRESETS and PRESETS[name].actions:
                continue  # a preset's settings table, read above
            key = join_key("actions", name)
            if not _NAME.match(name):
                raise self.error(
                    "an action name uses letters, digits, '_', '.' and '-', and starts with a "
                    f"letter or digit; got {json.dumps(name)}",
                    key,
                )
            base, preset_of = merged.get(name, ({}, None))
            if "argv" in table or "steps" in table:
                base = {k: v for k, v in base.items() if k not in ("argv", "steps")}
            merged[name] = ({**base, **table}, preset_of)
        actions = {
            name: self._action(name, table, preset) for name, (table, preset) in merged.items()
        }
        scheduler = next((p for p in presets if p.read_state is not None), None)
        return ActionCatalog(actions=actions, scheduler=scheduler)

    def _presets(self) -> list[Preset]:
        chosen: list[Preset] = []
        owner: dict[str, str] = {}
        for i, name in enumerate(self.presets):
            key = f"actions.presets[{i}]"
            preset = PRESETS.get(name)
            if preset is None:
                raise self.error(
                    f"no preset {json.dumps(name)}{did_you_mean(name, list(PRESETS))}; "
                    f"presets: {', '.join(PRESETS)}",
                    key,
                )
            for action in preset.actions:
                if action in owner and owner[action] != name:
                    raise self.error(
                        f"presets {owner[action]} and {name} both define the action "
                        f'"{action}"; enable the one your scheduler is',
                        key,
                    )
                owner[action] = name
            if preset not in chosen:
                chosen.append(preset)
        for name in self.raw:
            if name in PRESETS and PRESETS[name].actions and PRESETS[name] not in chosen:
                raise self.error(
                    f"[actions.{name}] sets up the {name} preset, which is not enabled; add "
                    f'"{name}" to [actions] presets',
                    join_key("actions", name),
                )
        return chosen

    def _settings(self, preset: Preset) -> dict[str, Any]:
        raw = self.raw.get(preset.name)
        if raw is None:
            return {}
        key = join_key("actions", preset.name)
        settings = self._convert(raw, PresetSettings, key)
        return {k: v for k, v in msgspec.structs.asdict(settings).items() if v is not None}

    def _convert(self, raw: Any, schema: type[Any], key: str) -> Any:
        try:
            return msgspec.convert(raw, schema)
        except msgspec.ValidationError as exc:
            raise from_validation_error(exc, raw, schema, self.source, key) from None

    def _action(self, name: str, raw: Mapping[str, Any], preset: Preset | None) -> ActionDef:
        key = join_key("actions", name)
        table: ActionTable = self._convert(dict(raw), ActionTable, key)
        if table.argv is not None and table.steps is not None:
            raise self.error("give argv (one command) or steps (several), not both", key)
        if table.argv is None and table.steps is None:
            raise self.error(
                'no command: give argv = ["program", "arg", ...] or [[actions.NAME.steps]]', key
            )
        step_tables = [StepTable(argv=table.argv)] if table.argv is not None else table.steps
        assert step_tables is not None
        if not step_tables:
            raise self.error("steps is empty: give at least one step", join_key(key, "steps"))
        single = table.argv is not None
        steps = tuple(
            self._step(step, i, table, f"{key}.argv" if single else f"{key}.steps[{i}]")
            for i, step in enumerate(step_tables)
        )
        return ActionDef(
            name=name,
            steps=steps,
            confirm=True if table.confirm is None else table.confirm,
            on_fail=bool(table.on_fail),
            on_resume=bool(table.on_resume),
            description=table.description or "",
            preset=preset.name if preset is not None else None,
            guard=preset.guards.get(name, "none") if preset is not None else "none",
        )

    def _step(self, step: StepTable, index: int, action: ActionTable, key: str) -> StepDef:
        try:
            command = CommandTemplate.parse(step.argv)
        except TemplateError as exc:
            raise self.error(str(exc), key) from None
        if step.for_each_line:
            if index == 0:
                raise self.error(
                    "for_each_line reads the previous step's output, and this is the first step",
                    key,
                )
            if "job" not in command.names:
                raise self.error(
                    "for_each_line runs this step once per output line of the previous step, "
                    "as {job}, but its argv does not use {job}",
                    key,
                )
        where = step.where or action.where or LOCAL
        if where != LOCAL and where not in _NODE_WHERE and not _ALIAS.match(where):
            raise self.error(
                f'where must be "local", an SSH alias or "{{node}}", got {json.dumps(where)}',
                key.rsplit(".argv", 1)[0] + ".where",
            )
        return StepDef(
            command=command,
            where=where,
            timeout_s=step.timeout_s or action.timeout_s or DEFAULT_TIMEOUT_S,
            for_each_line=step.for_each_line,
        )
