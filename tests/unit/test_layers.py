"""tunegate's dependency rules, checked on every import statement of the code (function-level
imports included), read with ``ast``: no module is run.

The rules (docs/development.md): the kernel (settings, ids, errors, processes, logs) imports nothing
of ours; domain and chat only the kernel; graders only domain (torch-free, no server); store and
adapters only domain and the kernel; training only chat, domain, graders and the kernel; serving never
the worker, training or torch; the worker never the API or serving; a few training modules
(spec, errors, messages, precision, journal, hyperparams) never torch; only
tunegate.worker.ray_executor imports ray; handlers only the API, domain and the kernel; the
client (``tunegate train``, ``jobs``, ``chat``) only the kernel; only the CLI imports both the
API and the worker. The CLI is ``tunegate.cli``, ``tunegate.__main__`` and
``tunegate.supervision`` (the processes ``serve`` runs beside the API): no other layer imports
it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = {"tunegate", "tunegate.settings", "tunegate.ids", "tunegate.errors", "tunegate.processes",
          "tunegate.logs"}
CLI = {"tunegate.cli", "tunegate.__main__", "tunegate.supervision"}
LAYERS = ("api", "domain", "chat", "store", "adapters", "training", "serving", "worker",
          "client", "contract", "graders")
# What each layer may import of ours, besides itself and the kernel.
ALLOWED: Mapping[str, set[str]] = {
    "kernel": set(),
    "domain": set(),
    "chat": set(),
    "store": {"domain"},
    "adapters": {"domain"},
    # Reinforcement rewards come from the grader engine (and its OpenAI-compatible endpoint).
    "training": {"chat", "domain", "graders"},
    "serving": {"chat", "domain"},
    # Graders score samples for the API, eval runs and reinforcement rewards: torch-free, no server.
    "graders": {"domain"},
    "worker": {"domain", "store", "training", "adapters", "graders"},
    "api": {"domain", "store", "adapters", "serving", "chat", "graders"},
    "handlers": {"api", "domain"},
    # The command-line client knows a server only through the HTTP API (the openai SDK).
    "client": set(),
    # The contract's rules for outside schemathesis runs: what the spec cannot say, from domain.
    "contract": {"domain"},
    "cli": set(LAYERS),
}
TORCH = {"torch", "transformers", "peft"}
NO_TORCH = {"kernel", "domain", "chat", "store", "serving", "api", "handlers", "cli", "client",
            "contract", "graders"}
# Training modules the worker (or a torch-free test) reads without loading torch.
TORCH_FREE_TRAINING = {"tunegate.training.spec", "tunegate.training.errors",
                       "tunegate.training.messages", "tunegate.training.precision",
                       "tunegate.training.journal", "tunegate.training.hyperparams",
                       "tunegate.training.estimate"}
# Ray is an optional extra that only Ray workers install: one module imports it.
RAY_MODULE = "tunegate.worker.ray_executor"


def layer_of(module: str) -> str:
    if module in KERNEL:
        return "kernel"
    if module in CLI:
        return "cli"
    if module == "handlers" or module.startswith("handlers."):
        return "handlers"
    parts = module.split(".")
    if parts[0] == "tunegate" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer: give it one in the rules")


def imported(tree: ast.AST, module: str) -> Iterable[str]:
    """Every module an import statement names (relative imports resolved)."""
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # submodules


def violations(sources: Mapping[str, str]) -> list[str]:
    """The broken rules in ``sources`` (module name -> source text)."""
    found = []
    ours = set(sources)
    for module, source in sources.items():
        layer = layer_of(module)
        for name in set(imported(ast.parse(source), module)):
            if name.split(".")[0] in TORCH and layer in NO_TORCH:
                found.append(f"{module} imports {name}: {layer} never loads torch")
            if name.split(".")[0] in TORCH and module in TORCH_FREE_TRAINING:
                found.append(f"{module} imports {name}: it is torch-free")
            if name.split(".")[0] == "ray" and module != RAY_MODULE:
                found.append(f"{module} imports {name}: only {RAY_MODULE} imports ray")
            if name not in ours:
                continue  # third-party, or a name imported from one of our modules
            target = layer_of(name)
            if target not in (layer, "kernel") and target not in ALLOWED[layer]:
                found.append(f"{module} ({layer}) imports {name} ({target})")
    return sorted(found)


def our_sources() -> dict[str, str]:
    sources = {}
    for top in ("tunegate", "handlers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            if "migrations" in parts:
                continue  # Alembic's scripts: run by Alembic, part of the store
            sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def test_the_code_keeps_the_dependency_rules() -> None:
    assert violations(our_sources()) == []


def test_a_forbidden_import_is_caught() -> None:
    """The check can fail: a domain module importing the API, the worker importing the API,
    serving importing torch, the kernel importing the domain, the API importing the CLI's
    process supervision."""
    sources = our_sources()
    sources["tunegate.domain.jobs"] += "\nfrom tunegate.api.service import Service\n"
    sources["tunegate.worker.loop"] += "\ndef f():\n    from tunegate.api import app\n"
    sources["tunegate.serving.engine"] += "\nimport torch\n"
    sources["tunegate.settings"] += "\nfrom tunegate.domain import jobs\n"
    sources["tunegate.training.precision"] += "\ndef f():\n    import torch\n"
    sources["tunegate.api.app"] += "\nfrom tunegate.supervision import EmbeddedWorker\n"
    assert violations(sources) == [
        "tunegate.api.app (api) imports tunegate.supervision (cli)",
        "tunegate.domain.jobs (domain) imports tunegate.api.service (api)",
        "tunegate.serving.engine imports torch: serving never loads torch",
        "tunegate.settings (kernel) imports tunegate.domain (domain)",
        "tunegate.settings (kernel) imports tunegate.domain.jobs (domain)",
        "tunegate.training.precision imports torch: it is torch-free",
        "tunegate.worker.loop (worker) imports tunegate.api (api)",
        "tunegate.worker.loop (worker) imports tunegate.api.app (api)",
    ]


def test_ray_stays_in_the_executor_module() -> None:
    """The Ray executor exists and is the only importer of ray; another module that imports it
    (the worker loop at module level, the API inside a function) is caught."""
    sources = our_sources()
    assert "import ray" in sources[RAY_MODULE]
    sources["tunegate.worker.loop"] += "\nimport ray\n"
    sources["tunegate.api.app"] += "\ndef f():\n    import ray.util\n"
    assert violations(sources) == [
        "tunegate.api.app imports ray.util: only tunegate.worker.ray_executor imports ray",
        "tunegate.worker.loop imports ray: only tunegate.worker.ray_executor imports ray",
    ]
