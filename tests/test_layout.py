"""The code's shape, checked: what `ftspace.offload` names by string exists and takes what it is given."""

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
