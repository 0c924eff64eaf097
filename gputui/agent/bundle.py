"""The agent as one self-contained Python source, sent to a host over the SSH channel's stdin.

Design (nothing is installed or written on the host):

1. The collector runs, through the host's shell, the command from bootstrap_command():

       python3 -B -c '<bootstrap>' --backend nvml --interval 1 ...

   The bootstrap reads exactly N bytes (the bundle's length, written into the command) from
   stdin, compiles them and runs them. `-B` keeps Python from writing .pyc files.
2. The collector writes the bundle (build_bundle()) to the channel's stdin and then keeps
   stdin open, writing nothing more: from then on stdin is the agent's liveness signal, and
   its end-of-file (the collector or the connection went away) makes the agent exit
   (stream.watch_stdin). `python3 - ARGS` would not do: it reads stdin to EOF before running.
3. The bundle registers the agent's modules, as package `gputui_agent`, with an in-memory
   importer placed first on sys.meta_path, and (with include_pynvml) the collector's own
   pynvml source with a second importer placed last, so a pynvml installed on the host wins
   and the shipped copy is only the fallback. Then it runs gputui_agent.main.main(argv).

Exit codes added by the bootstrap: 75 when stdin ended before the whole bundle arrived; 3
(with a fatal `error` line, code python_too_old) on a Python older than 3.8.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import zlib

PACKAGE = "gputui_agent"
EXIT_SHORT_BUNDLE = 75  # EX_TEMPFAIL: the channel broke while the bundle was arriving

# Modules of this package that are not part of the agent on the host.
_COLLECTOR_ONLY = ("bundle.py", "__main__.py")

# The importer and the entry point, kept to syntax every Python 3 parses so that an old
# interpreter reaches the version check and reports it as a protocol error line.
_HEADER = r'''
import sys, time

if sys.version_info < (3, 8):
    sys.stdout.write(
        '{"type":"error","v":1,"t":%.3f,"code":"python_too_old","fatal":true,'
        '"text":"gputui agent needs Python 3.8 or newer, this host has %d.%d"}\n'
        % (time.time(), sys.version_info[0], sys.version_info[1])
    )
    sys.stdout.flush()
    sys.exit(3)

import importlib.abc
import importlib.util


class _SourceImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from source text held in memory."""

    def __init__(self, sources, origin):
        self.sources = sources  # name -> (is_package, source)
        self.origin = origin

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.sources:
            return None
        is_package = self.sources[fullname][0]
        spec = importlib.util.spec_from_loader(fullname, self, is_package=is_package)
        spec.origin = "<%s %s>" % (self.origin, fullname)
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.sources[module.__name__][1]
        code = compile(source, module.__spec__.origin, "exec", dont_inherit=True)
        exec(code, module.__dict__)

    def get_source(self, fullname):
        # Tracebacks from the host then show the agent's source lines.
        return self.sources[fullname][1]
'''

_FOOTER = r"""
sys.meta_path.insert(0, _SourceImporter(_AGENT, "gputui-agent"))
if _FALLBACK:
    sys.meta_path.append(_SourceImporter(_FALLBACK, "gputui-shipped"))

from gputui_agent.main import main as _main

sys.exit(_main(sys.argv[1:]))
"""


def _agent_sources() -> dict[str, tuple[bool, str]]:
    """Every module of the agent, subpackages included (a folder with an __init__.py)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sources: dict[str, tuple[bool, str]] = {}
    _add_package(here, PACKAGE, sources, top=True)
    return sources


def _add_package(
    folder: str, package: str, sources: dict[str, tuple[bool, str]], top: bool = False
) -> None:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "__init__.py")):
                _add_package(path, f"{package}.{name}", sources)
            continue
        if not name.endswith(".py") or (top and name in _COLLECTOR_ONLY):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if name == "__init__.py":
            sources[package] = (True, text)
        else:
            sources[f"{package}.{name[:-3]}"] = (False, text)


def _pynvml_source() -> str:
    spec = importlib.util.find_spec("pynvml")
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise RuntimeError("cannot ship pynvml: nvidia-ml-py is not installed here")
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


def build_bundle(include_pynvml: bool = False) -> bytes:
    """The bytes shipped to the host: the zlib-compressed bundle source.

    Compression matters at fleet scale: the source is ~150 KB, ~480 KB with pynvml, and every
    host receives it at each (re)connect; compressed it is under a quarter of that.
    """
    return zlib.compress(bundle_source(include_pynvml), 9)


def bundle_source(include_pynvml: bool = False) -> bytes:
    """The bundle's source: header, module sources, footer (see the module doc)."""
    fallback: dict[str, tuple[bool, str]] = {}
    if include_pynvml:
        fallback["pynvml"] = (False, _pynvml_source())
    parts: list[str] = [
        "# gputui agent bundle: the agent's modules, run from memory (gputui/agent/bundle.py)",
        _HEADER,
        f"_AGENT = {_agent_sources()!r}",
        f"_FALLBACK = {fallback!r}",
        _FOOTER,
    ]
    return "\n".join(parts).encode("utf-8")


def bootstrap_source(bundle_len: int) -> str:
    """The one-line program given to `python3 -c`: read the bundle from stdin and run it."""
    return (
        "import sys,zlib;"
        f"b=sys.stdin.buffer.read({int(bundle_len)});"
        f"len(b)=={int(bundle_len)} or sys.exit({EXIT_SHORT_BUNDLE});"
        'exec(compile(zlib.decompress(b),"<gputui-agent-bundle>","exec"))'
    )


def bootstrap_command(python: str, bundle_len: int, args: list[str]) -> str:
    """The shell command line that starts the agent: every word shlex-quoted."""
    words = [python, "-B", "-c", bootstrap_source(bundle_len), *args]
    return " ".join(shlex.quote(w) for w in words)
