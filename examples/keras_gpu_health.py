"""The seed's Keras program, with gputui's GPUHealthMonitor in place of its callback.

    KERAS_BACKEND=torch python examples/keras_gpu_health.py            # MNIST, this GPU
    KERAS_BACKEND=torch python examples/keras_gpu_health.py --synthetic --simulate xid79

`--synthetic` trains on random data shaped like MNIST (no download); `--simulate SCENARIO`
reads a simulated GPU instead of this machine's (gputui/scenarios/*.toml; xid79 loses GPU 3
two seconds in), so the program runs, and stops, on a machine without a GPU. A GPU fault
saves `gpu_fault.keras` and exits with status 75 (docs/training.md).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from gputui.train.keras import GPUHealthMonitor
from gputui.train.nvml import simulated


def data(synthetic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if synthetic:
        rng = np.random.default_rng(0)
        x_train = rng.random((2048, 784), dtype=np.float32)
        x_test = rng.random((512, 784), dtype=np.float32)
        y_train = rng.integers(0, 10, 2048)
        y_test = rng.integers(0, 10, 512)
    else:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        x_train = x_train.reshape(-1, 784).astype("float32") / 255
        x_test = x_test.reshape(-1, 784).astype("float32") / 255
    return (
        x_train,
        keras.utils.to_categorical(y_train, 10),
        x_test,
        keras.utils.to_categorical(y_test, 10),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", action="store_true", help="random data, no download")
    p.add_argument("--simulate", metavar="SCENARIO", help="read a simulated GPU (e.g. xid79)")
    p.add_argument("--gpu", type=int, default=3, help="with --simulate: the GPU to watch")
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    monitor_args = {}
    if args.simulate:
        make = simulated(args.simulate)
        monitor_args = {"backend": make, "device": make().hello()["gpus"][args.gpu]["uuid"]}
    x_train, y_train, x_test, y_test = data(args.synthetic)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    monitor = GPUHealthMonitor(every_batches=20, exit_on_fault=True, **monitor_args)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=128, callbacks=[monitor])
    scores = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test accuracy: {scores[1] * 100:.2f}%")


if __name__ == "__main__":
    main()
