"""Inside the training loop: gputui's health rules on this process's own GPU.

`GPUGuard` for plain loops; `gputui.train.keras.GPUHealthMonitor` (Keras 3) and
`gputui.train.lightning.GPUHealthCallback` (PyTorch Lightning), importable once their
framework is installed (`pip install gputui[keras]`, `gputui[lightning]`). Each reads NVML
through the agent's backend in a background thread, judges the GPU with core's rules, stops
training on a critical or failed verdict, and writes a heartbeat that the agent forwards to the
monitor. docs/training.md shows each in a few lines. This package imports no framework.
"""

from gputui.train.check import GpuCheck
from gputui.train.faults import EXIT_GPU_FAULT, GPUFault
from gputui.train.guard import GPUGuard

__all__ = ["EXIT_GPU_FAULT", "GPUFault", "GPUGuard", "GpuCheck"]
