"""What a training loop is told when its GPU fails, and the exit status that says so."""

from __future__ import annotations

from gputui.train.check import GpuCheck

#: The exit status of a training process stopped for its GPU (EX_TEMPFAIL of sysexits.h: the
#: work may succeed elsewhere). A Slurm epilog or a launcher that sees it can requeue the job
#: away from the node; torchrun restarts its workers on any failure (docs/training.md).
EXIT_GPU_FAULT = 75


def describe(check: GpuCheck) -> str:
    """`GPU 3 (GPU-1a2b...) failed: GPU 3 XID 79 ... ; NVIDIA's action: reboot node`."""
    worst = check.worst
    why = worst.text if worst is not None else f"status {check.status}"
    action = check.action.value
    text = f"GPU {check.gpu} ({check.uuid}) {check.level.label}: {why}"
    return text + (f"; NVIDIA's action: {action}" if action != "none" else "")


class GPUFault(RuntimeError):
    """This process's GPU reached a critical or failed verdict; `check` says why."""

    def __init__(self, check: GpuCheck) -> None:
        super().__init__(describe(check))
        self.check = check
