"""The package's shape (issue 30): no two modules import each other, no private autograd or torch ops, the
reusable blocks apart from the models, no measured timings in the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "msa_toolkit"
#: the one autograd function the models need: gradient reversal (MInD), which autograd has no op for
ALLOWED_AUTOGRAD_FUNCTIONS = {"GradReverse"}
#: the size budget of the model code: the blocks (layers/) plus the models that existed before the MMSA zoo
#: (issue 34), together: 3400 after the one-path step (issue 30), plus 250 for the blocks the zoo's models share
#: instead of each bringing its own (layers/recurrent.py, memory_fusion.py, fusion.py, the CMD loss, additive
#: attention)
MODEL_CODE_MAX_LINES = 3400 + 250
#: the model files of the toolkit before the zoo, held to MODEL_CODE_MAX_LINES with layers/
PRE_ZOO_MODEL_FILES = ("__init__.py", "_registry.py", "base.py", "presets.py", "baselines.py", "almt.py", "dlf.py",
                       "mind.py", "mmcl.py", "_mmcl_parts.py")
#: every model file added with or after the zoo (self_mm.py, misa.py, ...) has its own budget: one model, one
#: file, built from layers/ blocks; a file over it is bringing its own blocks or duplicating a model
ZOO_MODEL_MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every package module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in mods else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in mods and m != name}


def test_no_two_modules_import_each_other():
    mods = _modules()
    edges = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert "msa_toolkit.layers.transformer" in edges["msa_toolkit.models.dlf"] or \
        "msa_toolkit.layers" in edges["msa_toolkit.models.dlf"]  # the scan sees imports at all
    cycles = sorted((a, b) for a in edges for b in edges[a] if a < b and a in edges.get(b, ()))
    assert cycles == []


def test_no_private_autograd_function_or_torch_op():
    functions, private_ops = [], []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("autograd.Function") for b in node.bases):
                functions.append(node.name)
            if isinstance(node, ast.Attribute) and ast.unparse(node).startswith("torch.ops."):
                private_ops.append(f"{path.name}: {ast.unparse(node)}")
    assert set(functions) == ALLOWED_AUTOGRAD_FUNCTIONS
    assert private_ops == []


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_model_code_stays_within_its_budget():
    models = PACKAGE / "models"
    assert all((models / name).is_file() for name in PRE_ZOO_MODEL_FILES)  # the list names real files
    files = [*(models / name for name in PRE_ZOO_MODEL_FILES), *(PACKAGE / "layers").glob("*.py")]
    assert sum(_lines(f) for f in files) <= MODEL_CODE_MAX_LINES
    zoo = {f.name: _lines(f) for f in models.glob("*.py") if f.name not in PRE_ZOO_MODEL_FILES}
    assert {"mctn.py", "mfm.py", "graph_mfn.py", "cenet.py", "tetfn.py", "self_mm.py", "misa.py", "mmim.py",
            "mag_bert.py"} <= set(zoo)
    assert {name: n for name, n in zoo.items() if n > ZOO_MODEL_MAX_LINES} == {}


#: a measured comparison in prose: "3.8 ms vs 0.3", "12 us against 20", "1.6x faster", "20 % faster",
#: "Measured on the 2-core CPU" (parameters such as "a 10 ms hop" or "0.1 x 200 epochs" pass)
TIMING = re.compile(r"\d+(\.\d+)? ?(ms|µs|us|s)\)? (vs|against) \d|\d+(\.\d+)? ?[x×%] (faster|slower)"
                    r"|[Mm]easured on the \d-core")


def test_no_measured_timings_in_the_source():
    """Measurements belong in benchmarks/results/, with their date and machine, not in docstrings."""
    hits = []
    for path in PACKAGE.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if TIMING.search(line):
                hits.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert hits == []
