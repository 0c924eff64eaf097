"""OperatorPort over gputui.ops: every request journaled, every command previewed first.

The ops layer does the work (journal intent before a command, completion after, guards that
leave other tools' decisions alone); this adapter only turns its operations and outcomes into
the app's words. Its `OperatorActions` is reached through a getter because the demo fleet's
hosts, hence its actions, exist only once the fleet has started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gputui.core.model import FleetSnapshot
from gputui.ops.actions import ActionError, Operation, OperatorActions
from gputui.ops.actions import Outcome as OpsOutcome
from gputui.ops.kill import KillPlan
from gputui.tui.operator import ActionChoice, OnOutput, Outcome, Prepared, RequestKind


class OpsOperator:
    def __init__(self, ops: Callable[[], OperatorActions | None]) -> None:
        self._ops = ops

    @property
    def journaled(self) -> bool:
        return True

    @property
    def refusal(self) -> str | None:
        ops = self._ops()
        try:
            if ops is not None:
                ops.refuse_if_readonly()
        except ActionError as exc:
            return str(exc)
        return None

    def _require(self) -> OperatorActions:
        ops = self._ops()
        if ops is None:
            raise ValueError("the fleet is still starting: try again in a moment")
        return ops

    def actions(self, host: str) -> Sequence[ActionChoice]:
        ops = self._ops()
        if ops is None:
            return ()
        return [ActionChoice(a.name, a.description) for a in ops.catalog]

    def spare_for(self, host: str, snapshot: FleetSnapshot | None) -> str | None:
        ops = self._ops()
        if ops is None:
            return None
        try:
            return ops.propose_spare(host, snapshot)
        except ActionError:
            return None

    async def prepare(
        self,
        kind: RequestKind,
        host: str,
        *,
        reason: str = "",
        action: str = "",
        force: bool = False,
        spare: str = "",
    ) -> Prepared:
        ops = self._require()
        try:
            if kind == "fail":
                ops.check_fail(host, reason)
                op = ops.prepare_fail(host, reason, jobs=await ops.read_jobs(host))
            elif kind == "resume":
                op = ops.prepare_resume(host, force=force)
            elif kind == "spare":
                found = ops.prepare_spare(host, spare or None)
                if found is None:
                    raise ValueError(f"no healthy spare is left in {host}'s group")
                op = found
            else:
                jobs = None
                if action in ops.catalog and ops.catalog[action].names_jobs:
                    jobs = await ops.read_jobs(host)
                op = ops.prepare_action(action, host, reason=reason, jobs=jobs, force=force)
        except ActionError as exc:
            raise ValueError(str(exc)) from None
        preview = op.preview()
        return Prepared(
            kind=kind,
            host=host,
            summary=preview[0] if preview else op.summary(),
            preview=tuple(preview[1:]),
            commands=sum(len(p.steps) for p in op.plans),
            confirm=op.needs_confirm,
            handle=op,
            jobs=op.jobs.summary() if op.jobs is not None else "",
        )

    async def prepare_kill(self, host: str, pid: int) -> Prepared:
        ops = self._require()
        try:
            plan = ops.prepare_kill(host, pid)
        except ActionError as exc:
            raise ValueError(str(exc)) from None
        return Prepared(
            kind="kill",
            host=host,
            summary=plan.summary(),
            preview=tuple(plan.preview()),
            question=plan.question(),
            commands=1,
            handle=plan,
        )

    async def run(self, prepared: Prepared, on_output: OnOutput) -> Outcome:
        ops = self._require()
        op = prepared.handle
        if isinstance(op, KillPlan):
            try:
                killed = await ops.kill(op, on_output)
            except ActionError as exc:  # read-only since, or no longer listed: nothing sent
                return Outcome(False, str(exc))
            except Exception as exc:  # the journal itself failed
                return Outcome(False, f"{op.summary()}: not done: {exc}")
            return Outcome(killed.ok, f"{killed.text} (journaled)")
        assert isinstance(op, Operation)
        try:
            outcome = await ops.run(op, on_output)
        except Exception as exc:  # the journal itself failed: say so, the app goes on
            return Outcome(False, f"{op.summary()}: not done: {exc}")
        return _outcome(op, outcome)


def _outcome(op: Operation, outcome: OpsOutcome) -> Outcome:
    if outcome.ok:
        skipped = [a.note for a in outcome.actions if a.status == "skipped" and a.note]
        recorded = " (journaled)" if outcome.state is not None else ""
        text = f"{op.summary()}: done{recorded}"
        return Outcome(True, text + (f"; {'; '.join(skipped)}" if skipped else ""))
    return Outcome(False, "; ".join(outcome.errors()) or f"{op.summary()}: failed", outcome.refused)
