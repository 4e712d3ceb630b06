"""The layout's rules, read statically (`ast`) from every module of `bridge` and `control`; an
import anywhere counts, in a function or under `if TYPE_CHECKING:` too. Each rule is one test."""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bridge", "control")

# Modules that may open sockets, start processes or start tasks (rule 6), by path prefix.
GLUE = {
    "bridge/net/": "the asyncio transports: SIP UDP/TCP, RTP sockets, the mixer clock",
    "bridge/server.py": "the bridge's glue: timers, the mixer clock task, the watchdog",
    "bridge/mixing/local.py": "the in-process media backend owns its calls' RTP sockets",
    "bridge/mixing/workers/": "the worker backend: processes, their socket pairs, RTP sockets",
    "bridge/mixing/recording_writer.py": "a recording's writer thread: the tick never waits",
    "bridge/tools/": "the load generator and scripted phone, not the server",
    "control/runtime.py": "wires bridge and control plane: the HTTP listener and its task",
    "control/plane.py": "the control plane's event pump and conference scheduler tasks",
    "control/outbox.py": "the webhook deliverer task (persistent outbox)",
    "control/dialout.py": "a dial-out list is dialled in order by one task per request",
    "control/voicemail.py": "a voice-mail caller's prompt and length timer, the message's save",
}
# Calls that open a socket or start a task or process: by qualified name, or by method name
# on anything (loop.create_task, task_group.create_task, loop.create_datagram_endpoint, ...).
QUALIFIED = {
    "socket.socket", "socket.socketpair", "socket.fromfd", "subprocess.Popen",
    "threading.Thread", "multiprocessing.Process", "asyncio.TaskGroup", "asyncio.ensure_future",
    "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell",
}  # fmt: skip
METHODS = {
    "create_datagram_endpoint", "create_server", "create_connection", "open_connection",
    "start_server", "create_unix_server", "create_unix_connection", "open_unix_connection",
    "start_unix_server", "create_task", "ensure_future", "subprocess_exec", "subprocess_shell",
}  # fmt: skip


class Module:
    def __init__(self, path: Path) -> None:
        parts = path.relative_to(ROOT).with_suffix("").parts
        self.is_package = parts[-1] == "__init__"
        self.name = ".".join(parts[:-1] if self.is_package else parts)
        self.path = path.relative_to(ROOT).as_posix()
        self.tree = ast.parse(path.read_text(), filename=self.path)
        # local name -> what it stands for ("np" -> "numpy", "Room" -> "bridge.mixing.room.Room")
        self.aliases: dict[str, str] = {}
        self.imported: list[str] = []  # every imported dotted name, absolute
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported.append(alias.name)
                    local = alias.asname or alias.name.split(".")[0]
                    self.aliases[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(node.module or "", node.level)
                for alias in node.names:
                    self.imported.append(f"{base}.{alias.name}")
                    self.aliases[alias.asname or alias.name] = f"{base}.{alias.name}"

    def _absolute(self, module: str, level: int) -> str:
        parts = self.name.split(".")
        base = parts[: len(parts) - level + self.is_package] if level else []
        return ".".join([*base, module] if module else base)

    def qualify(self, node: ast.expr) -> str | None:
        """`socket.socket`, also for `socket` after `from socket import socket`."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute) and (owner := self.qualify(node.value)):
            return f"{owner}.{node.attr}"
        return None


@cache
def modules() -> dict[str, Module]:
    found = (Module(p) for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")))
    return {module.name: module for module in found}


def resolve(name: str) -> str | None:
    """The project module an imported dotted name lands in (`a.b.c` -> `a.b` when c is a name)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def module_graph() -> dict[str, set[str]]:
    resolved = {name: {resolve(i) for i in module.imported} for name, module in modules().items()}
    return {name: {t for t in targets if t and t != name} for name, targets in resolved.items()}


def package_of(module: str) -> str:
    """`bridge.sip.dialog` -> `bridge.sip`; a top-level module (`bridge.config`) is its own unit."""
    return ".".join(module.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(components: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in components:
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        lines.append(f"cycle {{{', '.join(component)}}}: " + "; ".join(edges))
    return "\n".join(lines)


def edges_where(source: str, target: str) -> list[str]:
    """Import edges from `source` or the modules under it to `target` or the modules under it."""
    return [
        f"{a} -> {b}"
        for a, targets in sorted(module_graph().items())
        for b in sorted(targets)
        if f"{a}.".startswith(f"{source}.") and f"{b}.".startswith(f"{target}.")
    ]


def test_no_import_cycle_between_modules() -> None:
    graph = module_graph()
    assert not (found := cycles(graph)), "import cycles between modules:\n" + describe(found, graph)


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in module_graph().items():
        graph[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    assert not (found := cycles(graph)), "cycles between packages:\n" + describe(found, graph)


def test_bridge_never_imports_control() -> None:
    assert not (found := edges_where("bridge", "control")), "\n".join(found)


def test_mixing_does_not_import_the_conference_core() -> None:
    found = edges_where("bridge.mixing", "bridge.conference")
    assert not found, "below the media seam, above it:\n" + "\n".join(found)


def test_no_mixins() -> None:
    classes = [
        (module, node)
        for module in modules().values()
        for node in ast.walk(module.tree)
        if isinstance(node, ast.ClassDef)
    ]
    defined = {f"{m.name}.{c.name}" for m, c in classes}
    found = []
    for module, cls in classes:
        bases = [b.value if isinstance(b, ast.Subscript) else b for b in cls.bases]
        names = [module.qualify(b) or "" for b in bases]  # imported ones: where they come from
        ours = [n for n in names if n.split(".")[0] in PACKAGES or f"{module.name}.{n}" in defined]
        if cls.name.endswith("Mixin") or len(ours) >= 2:
            found.append(f"{module.path}: class {cls.name}({', '.join(names)})")
    assert not found, "mixins (by name, or two project base classes):\n" + "\n".join(found)


def test_only_the_glue_opens_sockets_or_starts_tasks() -> None:
    found = []
    for module in modules().values():
        if any(module.path.startswith(prefix) for prefix in GLUE):
            continue
        for node in (n for n in ast.walk(module.tree) if isinstance(n, ast.Call)):
            name = module.qualify(node.func) or ""
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in QUALIFIED or method in METHODS:
                found.append((module.path, node.lineno, name or method))
    lines = [f"{path}:{line}: {call}(...)" for path, line, call in sorted(found)]
    assert not lines, "sockets or tasks outside the glue (see GLUE):\n" + "\n".join(lines)
