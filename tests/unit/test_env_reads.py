"""context.py is the only env reader of the app.

Walks every module of the app packages (and app.py) with the AST and fails on ``os.environ`` / ``os.getenv`` /
``os.putenv`` (any alias of ``os``, and ``from os import environ``) outside context.py, except in the entry points
below: the ``main`` of a command line or of the trainer process reads that process's own environment and passes the
values down, as context.Settings does for the app. Everything else takes its settings as arguments.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "security", "generation", "retrieval", "arena", "evaluation", "training")
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}

# (module, function) -> why it may read the environment. A nested function or lambda counts as its enclosing one.
ENTRY_POINTS: dict[tuple[str, str], str] = {
    ("arena.export", "main"): "CLI: HF_TOKEN and HF_HUB_OFFLINE for --push-to-hub",
    ("evaluation.export_model", "main"): "CLI: --data-dir / --adapters-dir defaults",
    ("evaluation.publish", "main"): "CLI: --data-dir / --adapters-dir defaults, HF token, HF_HUB_OFFLINE",
    ("evaluation.run", "main"): "CLI: model and dir defaults, the judge key, reply budget, cache, RAG set, W&B",
    ("training.envcheck", "main"): "CLI: --data-dir default and the W&B mode runs will use",
    ("training.data.cli", "main"): "CLI: sets the offline default before huggingface_hub is imported",
    ("training.data.collect", "main"): "CLI: X / Apify tokens and API roots",
    ("training.train", "main"): "the trainer process: Launch.from_env (RANK, WORLD_SIZE, ...) and WANDB_SILENT",
    ("training.runner", "RunManager._launch"): "the trainer child inherits the server's environment plus its own",
}


def _modules() -> dict[str, Path]:
    out = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def env_reads(source: str, filename: str = "<source>") -> list[tuple[str, int]]:
    """(enclosing function's qualified name, line) of every environment access; "" = module level."""
    tree = ast.parse(source, filename=filename)
    os_names = set()  # names the os module is bound to in this file
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" or (alias.name.startswith("os.") and alias.asname is None):
                    os_names.add(alias.asname or "os")
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = scope + [node.name]
        if isinstance(node, ast.Attribute) and node.attr in ENV_NAMES:
            if isinstance(node.value, ast.Name) and node.value.id in os_names:
                found.append((".".join(scope), node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and not node.level:
            if any(alias.name in ENV_NAMES for alias in node.names):
                found.append((".".join(scope), node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return found


def _allowed(module: str, qualname: str, allow: dict[tuple[str, str], str]) -> tuple[str, str] | None:
    for mod, func in allow:
        if mod == module and (qualname == func or qualname.startswith(func + ".")):
            return mod, func
    return None


def _all_reads() -> dict[str, list[tuple[str, int]]]:
    return {name: reads for name, path in _modules().items() if (reads := env_reads(path.read_text(), str(path)))}


def test_the_walker_sees_every_spelling():
    src = (
        "import os\nimport os as o\nfrom os import getenv\n"
        "X = os.environ.get('A')\n"
        "def main():\n    return o.getenv('B')\n"
        "class C:\n    def f(self):\n        return [os.environ[k] for k in 'ab']\n"
        "def g():\n    os.environ.setdefault('C', '1')\n    return os.path.join('a', 'b')\n"
    )
    assert env_reads(src) == [("", 3), ("", 4), ("main", 6), ("C.f", 9), ("g", 11)]
    assert env_reads("def f(env):\n    return env.get('A')\n") == []  # a mapping passed in is not the environment
    assert _allowed("m", "main.inner", {("m", "main"): ""}) == ("m", "main")
    assert _allowed("m", "mainly", {("m", "main"): ""}) is None


def test_only_context_and_entry_points_read_the_environment():
    allow = dict(ENTRY_POINTS)
    bad = [
        f"{module}.{qualname or '<module>'} (line {line})"
        for module, reads in _all_reads().items()
        for qualname, line in reads
        if _allowed(module, qualname, allow) is None
    ]
    assert not bad, (
        "environment read outside context.py; add a Settings field in context.Settings.from_env and pass the value "
        "down:\n" + "\n".join(bad)
    )


def test_every_allowlisted_entry_point_still_reads_the_environment():
    allow = dict(ENTRY_POINTS)
    used = {
        hit
        for module, reads in _all_reads().items()
        for qualname, _ in reads
        if (hit := _allowed(module, qualname, allow)) is not None
    }
    stale = sorted(set(allow) - used)
    assert not stale, f"these entry points read no environment any more; delete them from the allowlist: {stale}"
