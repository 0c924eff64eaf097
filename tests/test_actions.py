"""Actions: the catalog (presets merged with hosts.toml), plans, runs, guards and spares.

Guards and presets run against small stand-ins for scontrol/squeue and kubectl that keep node
state in files and log every argv; tests/test_slurm.py drives the real Slurm.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gputui.collect.feed import HostFeed, Source
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.config import ConfigError, config_from_text
from gputui.core.model import (
    FleetSnapshot,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Verdict,
)
from gputui.ops.actions import ActionError, OperatorActions
from gputui.ops.catalog import load_actions
from gputui.ops.journal import Journal
from gputui.ops.presets import read_kubernetes_state, read_slurm_state
from gputui.ops.runner import CommandRunner

# --------------------------------------------------------------------------------------------
# Stand-ins for the scheduler commands
# --------------------------------------------------------------------------------------------

FAKE_SLURM = textwrap.dedent(
    """\
    #!PYTHON
    import json, os, sys
    from pathlib import Path
    d = Path(os.environ["FAKE_SCHED"])
    prog, args = Path(sys.argv[0]).name, sys.argv[1:]
    with open(d / "calls.log", "a") as f:
        f.write(json.dumps([prog, *args]) + "\\n")
    def state(n):
        p = d / f"{n}.json"
        return json.loads(p.read_text()) if p.exists() else None
    if prog == "squeue":
        if (d / "squeue.fail").exists():
            print((d / "squeue.fail").read_text(), file=sys.stderr); sys.exit(1)
        name = "squeue.json" if "--json" in args else "jobs"
        print((d / name).read_text() if (d / name).exists() else "", end="")
        sys.exit(0)
    if args[:3] == ["-o", "show", "node"]:
        s = state(args[3])
        if s is None:
            print(f"Node {args[3]} not found", file=sys.stderr); sys.exit(1)
        line = f"NodeName={args[3]} Arch=x86_64 State={s['state']} Partitions=gpu"
        if s.get("reason"):
            line += f" Reason={s['reason']} [{s['by']}@2026-01-01T00:00:00]"
        print(line); sys.exit(0)
    if args[0] == "requeue":  # as Slurm: each job of a comma list on its own
        stuck = (d / "norequeue").read_text().split() if (d / "norequeue").exists() else []
        refused = [j for j in args[1].split(",") if j in stuck]
        for j in refused:
            print(f"Requested operation is presently disabled for job {j}", file=sys.stderr)
        sys.exit(1 if refused else 0)
    if args[0] == "update":
        kv = dict(a.split("=", 1) for a in args[1:])
        n, s = kv["NodeName"], state(kv["NodeName"])
        if kv["State"] == "RESUME":
            if "DRAIN" not in s["state"] and "DOWN" not in s["state"]:
                print("slurm_update error: Invalid node state specified", file=sys.stderr)
                sys.exit(1)
            s = {"state": "IDLE"}
        else:
            s = {"state": "IDLE+" + kv["State"], "reason": kv["Reason"], "by": "root"}
        (d / f"{n}.json").write_text(json.dumps(s))
        sys.exit(0)
    sys.exit(2)
    """
)

FAKE_KUBECTL = textwrap.dedent(
    """\
    #!PYTHON
    import json, os, sys
    from pathlib import Path
    d = Path(os.environ["FAKE_SCHED"])
    args = sys.argv[1:]
    with open(d / "calls.log", "a") as f:
        f.write(json.dumps(["kubectl", *args]) + "\\n")
    def load(n):
        return json.loads((d / f"{n}.json").read_text())
    def save(n, s):
        (d / f"{n}.json").write_text(json.dumps(s))
    verb = args[0]
    if verb == "get":
        print(json.dumps(load(args[2]))); sys.exit(0)
    if verb in ("cordon", "uncordon"):
        s = load(args[1]); s.setdefault("spec", {})["unschedulable"] = verb == "cordon"
        save(args[1], s); sys.exit(0)
    if verb in ("label", "annotate"):
        rest = [a for a in args[1:] if a != "--overwrite"]
        n, pairs = rest[1], rest[2:]
        s = load(n); field = "labels" if verb == "label" else "annotations"
        m = s.setdefault("metadata", {}).setdefault(field, {})
        for p in pairs:
            if p.endswith("-"):
                m.pop(p[:-1], None)
            else:
                k, v = p.split("=", 1); m[k] = v
        save(n, s); sys.exit(0)
    sys.exit(0)
    """
)


class Sched:
    """A directory of node states and a bin/ of fake programs; `calls()` lists argvs run."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "sched"
        self.bin = tmp / "bin"
        self.dir.mkdir()
        self.bin.mkdir()
        for name, text in (
            ("scontrol", FAKE_SLURM),
            ("squeue", FAKE_SLURM),
            ("kubectl", FAKE_KUBECTL),
        ):
            prog = self.bin / name
            prog.write_text(text.replace("PYTHON", sys.executable))
            prog.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_SCHED": str(self.dir),
        }

    def slurm(self, node: str, state: str, reason: str = "", by: str = "root") -> None:
        (self.dir / f"{node}.json").write_text(
            json.dumps({"state": state, "reason": reason, "by": by})
        )

    def k8s(
        self, node: str, unschedulable: bool = False, labels: dict[str, str] | None = None
    ) -> None:
        doc = {
            "metadata": {"name": node, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
        }
        (self.dir / f"{node}.json").write_text(json.dumps(doc))

    def node(self, node: str) -> dict[str, object]:
        return json.loads((self.dir / f"{node}.json").read_text())  # type: ignore[no-any-return]

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def sched(tmp_path: Path) -> Sched:
    return Sched(tmp_path)


HOSTS = """
[groups.gpu]
hosts = ["gpu[001-003]"]
spares = ["gpu004", "gpu005"]
"""


@pytest.fixture
async def make(tmp_path: Path, sched: Sched) -> AsyncIterator:  # type: ignore[type-arg]
    made: list[tuple[OperatorActions, Journal]] = []

    def factory(actions: str = "", monitor: FleetMonitor | None = None) -> OperatorActions:
        config = config_from_text(HOSTS + textwrap.dedent(actions), "hosts.toml")
        journal = Journal.open(tmp_path / f"journal{len(made)}.sqlite3")
        ops = OperatorActions(config, journal, monitor=monitor, runner=CommandRunner(env=sched.env))
        made.append((ops, journal))
        return ops

    yield factory
    for ops, journal in made:
        await ops.aclose()
        journal.close()


def lines() -> tuple[list[str], object]:
    out: list[str] = []
    return out, out.append


# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


def catalog(text: str):  # type: ignore[no-untyped-def]
    return load_actions(config_from_text(HOSTS + textwrap.dedent(text), "hosts.toml"))


def test_presets_are_enabled_by_name_and_configured_as_a_whole() -> None:
    cat = catalog(
        """
        [actions]
        presets = ["slurm", "custom"]
        [actions.slurm]
        where = "slurmctl"
        timeout_s = 20
        [actions.requeue-jobs]
        on_fail = true
        [actions.drain]
        argv = ["scontrol", "update", "NodeName={node}", "State=DRAIN", "Reason=site: {reason}"]
        """
    )
    assert {a.name for a in cat.on_fail} == {"drain", "requeue-jobs"}
    assert [a.name for a in cat.on_resume] == ["resume"]
    assert all(s.where == "slurmctl" and s.timeout_s == 20 for a in cat for s in a.steps)
    assert cat["drain"].steps[0].command.text[-1] == "Reason=site: {reason}"
    assert cat["drain"].guard == "fence" and cat["resume"].guard == "resume"
    assert cat["requeue-jobs"].steps[0].command.text == ("scontrol", "requeue", "{jobs}")
    assert cat["requeue-jobs"].names_jobs and not cat["drain"].names_jobs
    assert cat.scheduler is not None and cat.scheduler.name == "slurm"
    listing = cat.jobs_action()
    assert listing is not None and not listing.confirm
    assert listing.steps[0].command.text[:2] == ("squeue", "--json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[actions]\npresets = ["slrum"]',
            'actions.presets[0]: no preset "slrum" (did you mean "slurm"?)',
        ),
        ('[actions]\npresets = ["slurm", "kubernetes"]', "both define the action"),
        ('[actions.kubernetes]\nwhere = "x"', "kubernetes preset, which is not enabled"),
        ("[actions.x]\nwhere = 'local'", "actions.x: no command"),
        ("[actions.x]\nargv = []", "actions.x.argv: argv is empty"),
        ('[actions.x]\nargv = ["a", "{nodes}"]', "actions.x.argv: unknown placeholder {nodes}"),
        ('[actions.x]\nargv = ["{node}"]', "cannot contain a placeholder"),
        ('[actions.x]\nargv = ["a", "{"]', "unmatched '{'"),
        (
            '[actions.x]\nargv = ["a"]\nconfrim = true',
            'actions.x.confrim: unknown key "confrim" (did you mean "confirm"?)',
        ),
        (
            '[actions.x]\nargv = ["a"]\ntimeout_s = 0',
            "actions.x.timeout_s: expected a number of seconds > 0",
        ),
        ('[actions.x]\nargv = ["a"]\nwhere = "a b"', 'actions.x.where: where must be "local"'),
        (
            '[actions.x]\nsteps = [{argv = ["a", "{job}"], for_each_line = true}]',
            "this is the first step",
        ),
        (
            '[actions.x]\nsteps = [{argv = ["a"]}, {argv = ["b"], for_each_line = true}]',
            "does not use {job}",
        ),
        ('[actions.x]\nargv = ["a"]\nsteps = [{argv = ["b"]}]', "not both"),
        ('[actions."bad name"]\nargv = ["a"]', "an action name uses letters"),
    ],
)
def test_catalog_mistakes_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        catalog(text)
    assert message in str(err.value)
    assert str(err.value).startswith("hosts.toml: ")


def test_literal_braces_and_embedded_placeholders() -> None:
    cat = catalog('[actions.x]\nargv = ["echo", "{{node}}={node}", "a{reason}b{gpu}"]')
    plan_argv = cat["x"].steps[0].command.render({"node": "n1", "reason": " r ", "gpu": "3"})
    assert plan_argv == ("echo", "{node}=n1", "a r b3")


# --------------------------------------------------------------------------------------------
# Plans and runs
# --------------------------------------------------------------------------------------------


async def test_plan_shows_exact_argv_and_refuses_what_it_cannot_fill(make) -> None:  # type: ignore[no-untyped-def]
    ops = make('[actions]\npresets = ["slurm"]\n[actions.slurm]\nwhere = "ctl"\n')
    plan = ops.plan("drain", "gpu001", reason="XID 79")
    assert plan.steps[0].command().argv == (
        "scontrol",
        "update",
        "NodeName=gpu001",
        "State=DRAIN",
        "Reason=gputui: XID 79",
    )
    preview = "\n".join(plan.preview())
    assert "[on ctl] scontrol update NodeName=gpu001 State=DRAIN 'Reason=gputui: XID 79'" in preview
    assert '"Reason=gputui: XID 79"]' in preview  # the argv as JSON too
    with pytest.raises(ActionError, match=r"needs a reason \(--reason TEXT\)"):
        ops.plan("drain", "gpu001")
    with pytest.raises(ActionError, match='no action "drian" \\(did you mean "drain"\\?\\)'):
        ops.plan("drian", "gpu001", reason="x")
    with pytest.raises(ActionError, match='no host "gpu01"'):
        ops.plan("drain", "gpu01", reason="x")
    with pytest.raises(ActionError, match="NUL"):
        ops.plan("drain", "gpu001", reason="a\0b")


async def test_a_value_that_would_read_as_an_option_is_refused(make) -> None:  # type: ignore[no-untyped-def]
    ops = make('[actions.x]\nargv = ["kubectl", "cordon", "{reason}", "--reason={reason}"]\n')
    with pytest.raises(ActionError, match="starts with '-'"):
        ops.plan("x", "gpu001", reason="--all")
    assert ops.plan("x", "gpu001", reason="a -b").steps[0].command().argv[-1] == "--reason=a -b"


async def test_failed_step_stops_the_action_and_the_ones_after(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    ops = make(
        f"""
        [actions.bad]
        steps = [{{argv = ["sh", "-c", "echo boom >&2; exit 3"]}}, {{argv = ["touch", "{marker}"]}}]
        [actions.after]
        argv = ["touch", "{marker}"]
        """
    )
    op = ops.prepare_fail("gpu001", "XID 79", ["bad", "after"])
    out, emit = lines()
    outcome = await ops.run(op, on_output=emit)
    assert not outcome.ok and not marker.exists()
    assert [a.status for a in outcome.actions] == ["failed", "not_run"]
    assert outcome.errors() == ["bad: `sh -c 'echo boom >&2; exit 3'` failed (exit 3): boom"]
    assert "[bad]   boom" in out and "[bad] exit 3" in out
    # The decision stands: the node is marked failed although its action failed.
    assert ops.journal.marked_failed() == {"gpu001"}
    runs = ops.journal.runs()
    assert [(r.action, r.exit_code, r.status) for r in runs] == [("bad", 3, "failed")]


async def test_timeout_kills_the_command_and_its_children(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pidfile = tmp_path / "child.pid"
    ops = make(
        f"""
        [actions.hang]
        argv = ["sh", "-c", "sleep 30 & echo $! > {pidfile}; wait"]
        timeout_s = 0.5
        """
    )
    outcome = await ops.run(ops.plan("hang", "gpu001"))
    (step,) = outcome.actions[0].steps
    assert step.exit_code is None and "timed out after 0.5 s" in (step.error or "")
    await asyncio.sleep(0.2)
    assert not alive(int(pidfile.read_text()))
    (run,) = ops.journal.runs()
    assert run.status == "failed" and "timed out" in (run.error or "")


def alive(pid: int) -> bool:
    """Running: a zombie (whose parent died before reaping it) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_missing_program_is_a_clear_failure(make) -> None:  # type: ignore[no-untyped-def]
    ops = make('[actions.x]\nargv = ["no-such-program-gputui", "{node}"]\n')
    outcome = await ops.run(ops.plan("x", "gpu001"))
    assert outcome.errors() == [
        "x: `no-such-program-gputui gpu001` failed (no-such-program-gputui: program not found)"
    ]


# --------------------------------------------------------------------------------------------
# Slurm preset against the stand-in
# --------------------------------------------------------------------------------------------

SLURM = '[actions]\npresets = ["slurm"]\n'


async def test_slurm_fail_requeues_the_nodes_jobs_in_one_command(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    sched.slurm("gpu002", "ALLOCATED")
    (sched.dir / "norequeue").write_text("12\n")
    jobs = await ops.read_jobs("gpu002", given=["11", "12", "13"])
    op = ops.prepare_fail("gpu002", "XID 79", ["drain", "requeue-jobs"], jobs=jobs)
    outcome = await ops.run(op)
    assert sched.node("gpu002")["reason"] == "gputui: XID 79"
    requeued = [c[2:] for c in sched.calls() if c[:2] == ["scontrol", "requeue"]]
    assert requeued == [["11,12,13"]]  # one argument; Slurm tries each job of it
    assert [a.status for a in outcome.actions] == ["ok", "failed"]
    assert outcome.errors() == [
        "requeue-jobs: `scontrol requeue 11,12,13` failed (exit 1): "
        "Requested operation is presently disabled for job 12"
    ]


async def test_slurm_resume_only_what_gputui_drained(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    sched.slurm("gpu001", "IDLE+DRAIN", "maintenance by bob", by="bob")
    outcome = await ops.run(ops.prepare_resume("gpu001"))
    assert outcome.refused and not outcome.ok and outcome.state is None
    (problem,) = outcome.errors()
    assert "taken out of service by someone else" in problem and "--force" in problem
    assert '"maintenance by bob" set by bob' in problem
    assert sched.node("gpu001")["state"] == "IDLE+DRAIN"

    forced = ops.prepare_resume("gpu001", force=True)
    assert forced.needs_confirm  # overriding someone else is always confirmed
    outcome = await ops.run(forced)
    assert outcome.ok and sched.node("gpu001")["state"] == "IDLE"
    assert outcome.state is not None and outcome.state.state == "in_service"


async def test_slurm_resume_of_a_node_in_service_is_a_no_op(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    sched.slurm("gpu001", "IDLE")
    outcome = await ops.run(ops.prepare_resume("gpu001"))
    assert outcome.ok and outcome.actions[0].status == "skipped"
    assert not [c for c in sched.calls() if "update" in c]


async def test_slurm_drain_leaves_someone_elses_drain_alone(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    sched.slurm("gpu003", "IDLE+DRAIN", "NHC: disk full", by="slurm")
    outcome = await ops.run(ops.prepare_fail("gpu003", "XID 79"))  # on_fail: drain
    assert outcome.ok and outcome.actions[0].status == "skipped"
    assert sched.node("gpu003")["reason"] == "NHC: disk full"
    assert "left as it is" in outcome.actions[0].note


async def test_an_unknown_node_in_the_scheduler_fails_the_guard(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    outcome = await ops.run(ops.prepare_resume("gpu001"))  # no state file: "not found"
    assert not outcome.ok
    assert "cannot read the scheduler state of gpu001" in outcome.errors()[0]
    assert "Node gpu001 not found" in outcome.errors()[0]


def test_reading_slurm_state() -> None:
    line = (
        "NodeName=gpu002 Arch=x86_64 CoresPerSocket=1 State=ALLOCATED+DRAIN ThreadsPerCore=1 "
        "Partitions=gpu Reason=gputui: XID 79 [root@2026-11-27T16:15:39]\n"
    )
    s = read_slurm_state(line)
    assert s.out_of_service and s.ours and "draining" in s.text and "root" in s.text
    s = read_slurm_state("NodeName=g State=DOWN*+DRAIN Reason=Not responding [slurm@2026]")
    assert s.out_of_service and not s.ours
    s = read_slurm_state("NodeName=g State=IDLE Partitions=gpu")
    assert not s.out_of_service and not s.ours


# --------------------------------------------------------------------------------------------
# Kubernetes preset against the stand-in
# --------------------------------------------------------------------------------------------

K8S = '[actions]\npresets = ["kubernetes"]\n'


async def test_kubernetes_cordon_labels_who_and_why_then_uncordon(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(K8S)
    sched.k8s("gpu001")
    assert (await ops.run(ops.prepare_fail("gpu001", "XID 79: fell off the bus"))).ok
    node = sched.node("gpu001")
    assert node["spec"] == {"unschedulable": True}
    meta = node["metadata"]
    assert meta["labels"] == {"gputui.io/cordoned": "true"}  # type: ignore[index]
    assert meta["annotations"] == {  # type: ignore[index]
        "gputui.io/cordoned-by": ops.journal.operator,
        "gputui.io/cordon-reason": "XID 79: fell off the bus",
    }
    assert (await ops.run(ops.prepare_resume("gpu001"))).ok
    node = sched.node("gpu001")
    assert node["spec"] == {"unschedulable": False}
    assert node["metadata"]["labels"] == {} and node["metadata"]["annotations"] == {}  # type: ignore[index]


async def test_kubernetes_leaves_other_tools_cordons_alone(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(K8S)
    sched.k8s("gpu002", unschedulable=True, labels={"nvsentinel/cordon-by": "nvsentinel"})
    failed = await ops.run(ops.prepare_fail("gpu002", "XID 79"))
    assert failed.ok and failed.actions[0].status == "skipped"
    resumed = await ops.run(ops.prepare_resume("gpu002"))
    assert resumed.refused
    assert sched.node("gpu002")["spec"] == {"unschedulable": True}
    assert [c[1] for c in sched.calls()] == ["get", "get"]  # looked, touched nothing


def test_reading_kubernetes_state() -> None:
    s = read_kubernetes_state(json.dumps({"spec": {}, "metadata": {}}))
    assert not s.out_of_service


# --------------------------------------------------------------------------------------------
# Spares and the monitor
# --------------------------------------------------------------------------------------------


def snapshot_with(*hosts: HostSnapshot) -> FleetSnapshot:
    return FleetSnapshot(t=0.0, hosts=hosts)


def host(
    name: str, level: Level = Level.OK, state: HostState = HostState.STREAMING
) -> HostSnapshot:
    return HostSnapshot(name=name, state=state, verdict=HostVerdict(host=Verdict(level=level)))


async def test_the_first_healthy_spare_is_proposed_and_activated(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    assert ops.propose_spare("gpu001") == "gpu004"
    warn = snapshot_with(host("gpu004", Level.WARN), host("gpu005"))
    assert ops.propose_spare("gpu001", warn) == "gpu005"
    down = snapshot_with(
        host("gpu004", state=HostState.UNREACHABLE), host("gpu005", Level.CRITICAL)
    )
    assert ops.propose_spare("gpu001", down) is None

    sched.slurm("gpu004", "IDLE+DRAIN", "gputui: spare")
    op = ops.prepare_spare("gpu001")
    assert op is not None and op.spare == "gpu004" and op.needs_confirm
    outcome = await ops.run(op)
    assert outcome.ok and sched.node("gpu004")["state"] == "IDLE"
    assert outcome.state is not None and outcome.state.state == "spare_active"
    assert outcome.state.detail == "gpu001"
    assert ops.propose_spare("gpu002") == "gpu005"  # gpu004 is in use now
    status = {n.name: n for n in ops.nodes()}
    assert status["gpu004"].status == "spare_active" and status["gpu005"].status == "spare"


async def test_a_spare_drained_by_someone_else_is_not_activated(make, sched: Sched) -> None:  # type: ignore[no-untyped-def]
    ops = make(SLURM)
    sched.slurm("gpu004", "IDLE+DRAIN", "broken PSU", by="alice")
    op = ops.prepare_spare("gpu001")
    assert op is not None
    outcome = await ops.run(op)
    assert outcome.refused and outcome.state is None


async def test_without_an_activate_action_the_spare_is_recorded(make) -> None:  # type: ignore[no-untyped-def]
    ops = make()
    op = ops.prepare_spare("gpu001")
    assert op is not None and op.plans == () and not op.needs_confirm
    outcome = await ops.run(op)
    assert outcome.ok and ops.nodes()[3].status == "spare_active"


class IdleSource(Source):
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, feed: HostFeed) -> None:
        await asyncio.Event().wait()


async def test_marking_failed_and_resuming_reach_the_monitor(make) -> None:  # type: ignore[no-untyped-def]
    monitor = FleetMonitor([HostPlan(source=IdleSource(f"gpu00{i}")) for i in (1, 2, 3)])
    ops = make(
        "[actions.note]\nargv = ['true']\nconfirm = false\non_fail = true\n", monitor=monitor
    )
    await ops.run(ops.prepare_fail("gpu002", "XID 79"))
    assert [h.marked_failed for h in monitor.publish().hosts] == [False, True, False]
    await ops.run(ops.prepare_resume("gpu002"))  # no scheduler: recorded only
    assert not any(h.marked_failed for h in monitor.publish().hosts)
    assert [e.state for e in ops.journal.node_events()] == ["failed", "in_service"]
