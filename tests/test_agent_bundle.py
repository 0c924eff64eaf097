"""The agent bundle: shipped over stdin, run from memory, on Python 3.8 too.

GPU hosts run the agent with their own python3, as old as 3.8. Two kinds of test hold that:

- `test_the_bundle_parses_as_python38` runs everywhere. It parses what is shipped (the
  bootstrap, the bundle, every agent module and the shipped pynvml) with 3.8's grammar, so a
  `match` statement, a parenthesised `with` or `except*` fails it. It cannot see what only
  running shows: a `X | Y` or `list[int]` annotation evaluated at import, or a call to an API
  3.8 lacks (`str.removeprefix`, `zip(strict=...)`).
- The tests that take `_python38()` import every agent module and stream the bundle under a
  real Python 3.8, which catches those too at import or within the first samples (code on
  paths the simulated backend never takes is not run). CI requires the interpreter:
  scripts/install-system-deps.sh provides it and GPUTUI_REQUIRE_SYSTEM=1 turns its absence
  into a failure.
"""

from __future__ import annotations

import ast
import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gputui.agent.bundle import (
    EXIT_SHORT_BUNDLE,
    bootstrap_command,
    bootstrap_source,
    build_bundle,
    bundle_source,
)
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import AgentError, Hello, Sample
from tests.conftest import need_program


def _is_python38(path: str) -> bool:
    done = subprocess.run(
        [path, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip() == "True"


@functools.cache
def _python38() -> str:
    """A real Python 3.8: `python3.8` on PATH, or one that pyenv built (make sysdeps provides
    one). Without it these tests skip on a workstation and fail in CI: never pass by skipping."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    built = sorted(str(p) for p in root.glob("versions/3.8*/bin/python3.8"))
    return need_program("python3.8", *built, accept=_is_python38)


def run_bundle(
    python: str, args: list[str], *, include_pynvml: bool = False, cwd: Path | None = None
) -> tuple[int, bytes, bytes]:
    """Start the agent as the collector does: the bootstrap command through a shell, the
    bundle down stdin, stdin then held open until the agent ends by itself."""
    bundle = build_bundle(include_pynvml=include_pynvml)
    command = bootstrap_command(python, len(bundle), args)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd or Path.cwd())}
    p = subprocess.Popen(
        command,
        shell=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    try:
        p.stdin.write(bundle)
        p.stdin.flush()
        out = p.stdout.read()
        rc = p.wait(timeout=60)
    finally:
        p.stdin.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc, out, p.stderr.read()


SIM_ARGS = ["--backend", "sim", "--interval", "0.1", "--duration", "0.6", "--host", "sim-007"]


def _decode(out: bytes) -> list[object]:
    decoder = StreamDecoder()
    msgs = [decoder.decode(line) for line in out.splitlines()]
    assert decoder.stats.bad == 0, decoder.stats.last_problem
    return msgs


def test_bundle_runs_from_memory_and_streams(tmp_path: Path) -> None:
    rc, out, err = run_bundle(sys.executable, SIM_ARGS, cwd=tmp_path)
    assert rc == 0, err
    msgs = _decode(out)
    hello = msgs[0]
    assert isinstance(hello, Hello) and hello.host == "sim-007" and hello.backend == "sim"
    assert sum(isinstance(m, Sample) for m in msgs) >= 4
    assert list(tmp_path.iterdir()) == []  # nothing written on the "host"


def test_bundle_runs_under_python38_with_the_shipped_pynvml(tmp_path: Path) -> None:
    python = _python38()
    rc, out, err = run_bundle(python, SIM_ARGS, include_pynvml=True, cwd=tmp_path)
    assert rc == 0, err
    msgs = _decode(out)
    assert isinstance(msgs[0], Hello) and any(isinstance(m, Sample) for m in msgs)
    assert list(tmp_path.iterdir()) == []


def test_shipped_pynvml_imports_under_python38() -> None:
    """Python 3.8 has no pynvml here: the shipped copy must import and reach NVML itself
    (which fails on a machine without a driver, and streams on one with a GPU)."""
    rc, out, err = run_bundle(_python38(), ["--backend", "nvml", "--once"], include_pynvml=True)
    first = _decode(out)[0]
    if isinstance(first, AgentError):
        assert rc == 3 and first.code == "nvml_init_failed", err
        assert "not importable" not in first.text
    else:
        assert rc == 0 and isinstance(first, Hello) and first.backend == "nvml"


def test_a_short_bundle_exits_75() -> None:
    bundle = build_bundle()
    command = bootstrap_command(sys.executable, len(bundle), SIM_ARGS)
    done = subprocess.run(command, shell=True, input=bundle[:1000], capture_output=True, timeout=30)
    assert done.returncode == EXIT_SHORT_BUNDLE
    assert done.stdout == b""


def test_bootstrap_command_quotes_every_word() -> None:
    args = ["--scenario-json", '{"name": "it\'s", "fault": []}', "--host", "a b;rm -rf /"]
    words = shlex.split(bootstrap_command("/usr/bin/python3", 1234, args))
    assert words[:3] == ["/usr/bin/python3", "-B", "-c"]
    assert "read(1234)" in words[3]
    assert words[4:] == args


def test_bundle_holds_every_agent_module_and_nothing_of_the_collector() -> None:
    text = bundle_source().decode("utf-8")
    here = Path(__file__).parent.parent / "gputui" / "agent"
    for module in here.glob("*.py"):
        if module.name not in ("bundle.py", "__main__.py"):
            assert f"'gputui_agent.{module.stem}'" in text or module.stem == "__init__"
    assert "'gputui_agent.bundle'" not in text
    assert "import msgspec" not in text and "from gputui." not in text
    assert "'pynvml'" not in text
    assert "'pynvml'" in bundle_source(include_pynvml=True).decode("utf-8")
    # What travels is compressed: a fraction of the source, pynvml included.
    assert len(build_bundle(include_pynvml=True)) < len(bundle_source(include_pynvml=True)) / 3


def test_every_agent_module_imports_under_python38() -> None:
    """Catches what ruff's py38 target cannot: a module-level use of a newer API."""
    python = _python38()
    here = Path(__file__).parent.parent / "gputui"
    modules = sorted(
        p.stem for p in (here / "agent").glob("*.py") if p.stem not in ("__main__", "__init__")
    )
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
        "[importlib.import_module('agent.' + m) for m in sys.argv[2:]]"
    )
    done = subprocess.run(
        [python, "-B", "-c", code, str(here), *modules], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()


def test_bundle_carries_the_smi_parser_subpackage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smi backend imports a subpackage of the agent: it must travel in the bundle."""
    fixtures = Path(__file__).parent / "fixtures" / "smi"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nvidia-smi"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"FAKE_SMI_HELLO={fixtures / 'a100_hello.csv'} "
        f"FAKE_SMI_TEMPERATURE={fixtures / 'a100_temperature.txt'} "
        f"FAKE_SMI_STREAM={fixtures / 'a100_faults.csv'} FAKE_SMI_PERIOD_S=0.05 "
        f'exec "{sys.executable}" "{fixtures / "fake_nvidia_smi.py"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    args = ["--backend", "smi", "--interval", "0.1", "--duration", "0.8", "--host", "dgx"]
    rc, out, err = run_bundle(sys.executable, args, cwd=tmp_path)
    assert rc == 0, err
    msgs = _decode(out)
    assert isinstance(msgs[0], Hello) and msgs[0].backend == "smi" and len(msgs[0].gpus) == 8
    assert any(isinstance(m, Sample) for m in msgs)


def _shipped_modules(bundle: str) -> dict[str, str]:
    """The module sources the bundle carries, read from its `_AGENT` and `_FALLBACK` literals."""
    modules: dict[str, str] = {}
    for node in ast.parse(bundle).body:
        match node:
            case ast.Assign(targets=[ast.Name(id="_AGENT" | "_FALLBACK")], value=value):
                modules.update((name, text) for name, (_, text) in ast.literal_eval(value).items())
    return modules


def test_the_bundle_parses_as_python38() -> None:
    """Python 3.8's grammar for all that is shipped; see the module doc for what it proves."""
    bundle = bundle_source(include_pynvml=True).decode("utf-8")
    modules = _shipped_modules(bundle)
    assert "gputui_agent.main" in modules and "pynvml" in modules
    texts = {"<bootstrap>": bootstrap_source(1234), "<bundle>": bundle, **modules}
    for name, text in texts.items():
        ast.parse(text, filename=name, feature_version=(3, 8))
