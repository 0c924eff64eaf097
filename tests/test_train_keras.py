"""The Keras callback in a real Keras 3 training run on the CPU (torch backend), its GPU the
simulated NVML's: a scripted XID 79 stops training in its epoch with a checkpoint, and a
healthy run's per-epoch history is what the simulated GPU read at each epoch's end.

The simulation's clock is stepped by the epochs (epoch e, from 0, spans simulated seconds
10e+1 to 10e+9), so a fault scripted at 25 s falls inside the third epoch whatever the speed
of the machine running the test. Synthetic data only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

# Keras reads its backend when first imported: torch, whose CPU build the dev extra installs.
os.environ.setdefault("KERAS_BACKEND", "torch")
import keras
import numpy as np

from gputui.agent.sim_backend import SimBackend
from gputui.core.model import Level, Sample
from gputui.train import EXIT_GPU_FAULT
from gputui.train.keras import GPUHealthMonitor
from gputui.train.nvml import simulated


class SimClock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


class StepsTheClock(keras.callbacks.Callback):  # type: ignore[misc]
    """Moves the simulated clock with the epochs; listed before the monitor."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.clock.t = 10.0 * epoch + 1.0

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.clock.t = 10.0 * epoch + 9.0


def scenario(*faults: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "train",
        "gpus": 2,
        "model": "H100-SXM",
        "workload": "training",
        "fault": list(faults),
    }


def uuid_of(table: dict[str, Any], index: int, seed: int = 0) -> str:
    backend = SimBackend(table, seed=seed, clock=lambda: 0.0, event_thread=False)
    return str(backend.hello()["gpus"][index]["uuid"])


def fit(monitor: GPUHealthMonitor, clock: SimClock, epochs: int = 8) -> keras.callbacks.History:
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model.fit(
        x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[StepsTheClock(clock), monitor]
    )


def test_an_xid_79_in_epoch_3_saves_a_checkpoint_and_stops_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUTUI_HEARTBEAT_DIR", str(tmp_path / "beats"))
    table = scenario({"kind": "xid", "xid": 79, "gpus": [1], "at": 25.0})
    clock = SimClock()
    monitor = GPUHealthMonitor(
        device=uuid_of(table, 1),
        backend=simulated(table, clock=clock),
        checkpoint_path=str(tmp_path / "fault-epoch{epoch}.keras"),
        print_summary=False,
    )
    with caplog.at_level(logging.ERROR, logger="gputui.train"):
        history = fit(monitor, clock)
    assert len(history.history["loss"]) == 3  # epochs 1, 2 and 3 ran; 4 never started
    assert monitor.stopped_epoch == 3
    saved = tmp_path / "fault-epoch3.keras"
    assert monitor.checkpoint == str(saved) and saved.is_file()
    restored = keras.models.load_model(saved)
    assert restored.count_params() == 16 * 8 + 8 + 8 + 1
    fault = monitor.fault
    assert fault is not None and fault.gpu == 1 and fault.xids == (79,)
    assert fault.level is Level.FAILED and fault.status == "lost"
    assert [level for _, (c,) in monitor.history for level in [c.level]] == [
        Level.OK,
        Level.OK,
        Level.FAILED,
    ]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert "stopping training: GPU 1" in logged[0] and "failed" in logged[0]
    assert "NVIDIA's action: reboot node" in logged[0]
    assert "Stopped in epoch 3" in monitor.summary()


def test_exit_on_fault_ends_fit_with_the_documented_status(tmp_path: Path) -> None:
    table = scenario({"kind": "xid", "xid": 79, "gpus": [0], "at": 5.0})
    clock = SimClock()
    monitor = GPUHealthMonitor(
        device=uuid_of(table, 0),
        backend=simulated(table, clock=clock),
        checkpoint_path=str(tmp_path / "ckpt.keras"),
        exit_on_fault=True,
        heartbeat=False,
        print_summary=False,
    )
    with pytest.raises(SystemExit) as ended:
        fit(monitor, clock)
    assert ended.value.code == EXIT_GPU_FAULT == 75
    assert (tmp_path / "ckpt.keras").is_file() and monitor.stopped_epoch == 1


def test_a_healthy_run_records_each_epoch_as_the_simulated_gpu_read_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = scenario()
    clock = SimClock()
    monitor = GPUHealthMonitor(
        device=uuid_of(table, 1, seed=3),
        backend=simulated(table, seed=3, clock=clock),
        checkpoint_path=str(tmp_path / "never.keras"),
        heartbeat=False,
    )
    history = fit(monitor, clock, epochs=4)
    assert len(history.history["loss"]) == 4 and monitor.fault is None
    assert not (tmp_path / "never.keras").exists()
    # The same simulated host, read at the same simulated moments by the agent's own backend.
    at = SimClock()  # from 0, as the monitor's was when training began
    reference = SimBackend(table, seed=3, clock=at, event_thread=False)
    info = reference.hello()["gpus"][1]
    assert [epoch for epoch, _ in monitor.history] == [1, 2, 3, 4]
    for epoch, (check,) in monitor.history:
        at.t = 10.0 * (epoch - 1) + 9.0
        body = reference.sample(True)
        read = msgspec.convert({"v": 1, "t": 0.0, "seq": 0, **body}, Sample).gpus[1]
        assert check.gpu == 1 and check.uuid == info["uuid"]
        assert check.temp_c == read.temp_c and check.power_w == read.power_w
        assert check.util_pct == read.util_pct and check.mem_used_mib == read.mem_used_mib
        assert check.mem_total_mib == info["memory_total_mib"]
        assert check.temp_slowdown_c == info["temp_slowdown_c"] == 89
        assert check.level is Level.OK and check.xids == ()
        assert check.framework_mem_mib is None  # on the CPU the allocator has nothing to say
    printed = capsys.readouterr().out
    assert printed.count("Epoch ") == 4 and f"GPU 1 ({info['uuid']})" in printed
    assert "MiB of 81,559 MiB" in printed
