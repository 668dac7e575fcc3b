"""The code's shape, checked: imports go one way (no circles, no layer imports a higher one), and what
`ftspace.offload` names by string exists and takes what it is given."""

import ast
import importlib
import inspect

from apptools import ROOT


def offload_calls():
    """(file:line, "module:function", keyword names) of every `offload.call("module:function", ...)` in ftspace/."""
    for path in sorted((ROOT / "ftspace").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "offload"):
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), \
                    f"{path}:{node.lineno}: offload.call names its function by a literal 'module:function'"
                yield f"{path.relative_to(ROOT)}:{node.lineno}", first.value, {k.arg for k in node.keywords}


def test_every_function_offload_names_exists_and_takes_its_arguments():
    calls = list(offload_calls())
    assert len(calls) >= 10, calls  # the tabs, the MCP tools and the CLI use it: none found means the scan broke
    for where, target, keywords in calls:
        module, _, name = target.partition(":")
        fn = getattr(importlib.import_module(module), name, None)
        assert callable(fn), f"{where}: {target} does not exist"
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = keywords - {"log_path", "isolate"} - set(params)
        assert takes_any or not unknown, f"{where}: {target} takes no {sorted(unknown)}"
        required = {n for n, p in params.items() if p.default is p.empty and p.kind not in (p.VAR_KEYWORD,
                                                                                            p.VAR_POSITIONAL)}
        assert required <= keywords, f"{where}: {target} needs {sorted(required - keywords)}"


# --- imports go one way (DEVELOPERS.md, "The code's layout"): a new circle or an upward import fails here

LAYERS = [  # lowest first; a module may import its own layer's and lower layers' modules, never a higher one's
    ["ftspace", "ftspace.env", "ftspace.errors", "ftspace.quiet", "ftspace.schema"],
    ["ftspace.access", "ftspace.config", "ftspace.limits", "ftspace.memory"],
    ["ftspace.owners", "ftspace.runs", "ftspace.offload"],
    ["ftspace.data", "ftspace.models"],
    ["ftspace.data.create", "ftspace.engine", "ftspace.evaluation", "ftspace.chat", "ftspace.hub", "ftspace.planning",
     "ftspace.sweep", "ftspace.export"],
    ["ftspace.targets"],
    ["ftspace.ui", "ftspace.cli", "ftspace.__main__"],
]


def import_graph(root=ROOT / "ftspace") -> dict[str, set[str]]:
    """{module: the ftspace modules it imports}, imports inside functions included (they are dependencies too)."""
    files = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}

    def owner(name):  # the module a dotted name lives in
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(owner(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names]
                found.update(owner(n) if n in files else owner(base) for n in names)
        graph[module] = {m for m in found if m and m.startswith("ftspace") and m != module}
    return graph


def layer_of(module: str) -> int | None:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[1]):
                best = (i, len(name))
    return best and best[0]


def upward(graph) -> list[str]:
    return [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
            for a in sorted(graph) for b in sorted(graph[a]) if layer_of(b) > layer_of(a)]


def circles(graph) -> list[list[str]]:
    """The import graph's strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_go_one_way_with_no_circles():
    graph = import_graph()
    assert len(graph) > 50 and graph["ftspace.targets.local"] >= {"ftspace.runs", "ftspace.engine.distributed"}
    unplaced = [m for m in graph if layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer of tests/test_layout.py (and DEVELOPERS.md): {unplaced}"
    assert not circles(graph), circles(graph)
    assert not upward(graph), "\n".join(upward(graph))


def test_the_layer_check_sees_a_circle_and_an_upward_import():
    """The checks above on a made-up graph: the run store importing the queue is both."""
    graph = {"ftspace.runs": {"ftspace.targets.queue"}, "ftspace.targets.queue": {"ftspace.runs"}}
    assert circles(graph) == [["ftspace.runs", "ftspace.targets.queue"]]
    assert upward(graph) == ["ftspace.runs (layer 2) imports ftspace.targets.queue (layer 5)"]


def test_tabs_tools_and_commands_reach_the_targets_only_through_their_interface():
    """Where a run trains (Jobs, ZeroGPU, a local worker) is decided in ftspace.targets: the tabs, the MCP tools and
    the CLI call its functions (submit, resume, stop, follow, drive, quote, ...) and the queue, never the targets'
    own modules."""
    graph = import_graph()
    inner = {"ftspace.targets.jobs", "ftspace.targets.jobs_log", "ftspace.targets.zerogpu", "ftspace.targets.local"}
    assert inner <= set(graph)
    entry = [m for m in graph if m.startswith(("ftspace.ui", "ftspace.cli")) or m == "ftspace.__main__"]
    assert len(entry) > 10
    bad = [f"{m} imports {sorted(graph[m] & inner)}" for m in sorted(entry) if graph[m] & inner]
    assert not bad, bad
