"""The house rules, held by walking the import graph with ast: no circles, tiers respected, one door for the UI.

The tiers live in code (``model.TIERS``, ``interp.TIERS``, ``dashboards.TIERS``, ``dashboards.VIEW_IMPORTS``);
docs/ARCHITECTURE.md explains them. Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dashboards
import interp
import model

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "interp", "dashboards")
MAX_LINES = 400  # past this, two concepts likely share a room: split by concept (STYLE: files around 300 lines)


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name refers to (``model.network.minigpt.MiniGPT`` -> its module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: {project modules it imports}}``; ``from pkg import mod`` counts as importing ``pkg.mod``."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports pkg.mod (and runs pkg/__init__, which holds no code of its own)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    return graph


def third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a list of modules, first == last), or None. Package ``__init__`` files that only
    re-export lazily are part of the graph like any module."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def room_of(module: str, tiers: tuple[tuple[str, ...], ...]) -> tuple[int, str] | None:
    """``(tier index, room)``: the tier entry that is the longest prefix of ``module``."""
    best: tuple[int, str] | None = None
    for i, tier in enumerate(tiers):
        for prefix in tier:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (i, prefix)
    return best


def tier_of(module: str, tiers: tuple[tuple[str, ...], ...]) -> int | None:
    room = room_of(module, tiers)
    return None if room is None else room[0]


def rule_violations(modules: dict[str, Path]) -> list[str]:
    """Every broken rule, one line each (empty when the house is in order)."""
    graph = import_graph(modules)
    problems = []
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import circle: " + " -> ".join(cycle))
    tiers = {"model": model.TIERS, "interp": interp.TIERS, "dashboards": dashboards.TIERS}
    for name, targets in graph.items():
        top = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if top == "model" and other in ("interp", "dashboards"):
                problems.append(f"{name} imports {target}: model never imports interp or dashboards")
            if top == "interp" and other == "dashboards":
                problems.append(f"{name} imports {target}: interp never imports dashboards")
            if other == top and target == top and name != top:
                problems.append(f"{name} imports its package root {top}: import from the defining module")
            if other == top and target != top and name != top:
                mine, theirs = room_of(name, tiers[top]), room_of(target, tiers[top])
                if mine is None or theirs is None:
                    problems.append(f"{name} or {target} is in no tier of {top}.TIERS: add it there")
                elif theirs[0] > mine[0]:
                    problems.append(f"{name} (tier {mine[0]}) imports {target} (tier {theirs[0]}): only lower tiers")
                elif theirs[0] == mine[0] and theirs[1] != mine[1]:
                    problems.append(
                        f"{name} imports {target}: two rooms of one tier ({mine[1]}, {theirs[1]}) stay apart"
                    )
            allowed = any(target == v or target.startswith(v + ".") for v in dashboards.VIEW_IMPORTS)
            if name.startswith("dashboards.views.") and top == other == "dashboards" and not allowed:
                problems.append(f"{name} imports {target}: a page imports only {dashboards.VIEW_IMPORTS}")
            if name.startswith("dashboards.views.") and other in ("model", "interp"):
                problems.append(f"{name} imports {target}: a page reaches the model only through dashboards.analyses")
        if top == "interp" and "streamlit" in third_party_imports(modules[name]):
            problems.append(f"{name} imports streamlit: interp never imports dashboards or streamlit")
        if name.startswith("dashboards.plots") and "streamlit" in third_party_imports(modules[name]):
            problems.append(f"{name} imports streamlit: plots are plain DataFrame -> Figure functions")
    return problems


def copy_tree(dest: Path) -> Path:
    """A copy of the three packages' modules under ``dest``, for a check to be shown a planted violation."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            target = dest / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    return dest


def room(module: str) -> str:
    """A module's room: its package and first folder (``interp.observe``, ``model.network``, ``dashboards.views``), or
    the module itself at a package's top (``dashboards.state``)."""
    return ".".join(module.split(".")[:2])


def private_imports(modules: dict[str, Path]) -> list[str]:
    """Every import of another room's private name (``from interp.observe.flow import _part`` in intervene): a
    helper shared across rooms is public in its room, or lives in the room that owns the concept."""
    found = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and not node.level
                and node.module.split(".")[0] in PACKAGES
            ):
                found += [
                    f"{name} imports {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and room(node.module) != room(name)
                ]
    return found


def test_no_room_imports_another_rooms_private_names():
    """Rooms keep their private names: a helper another room needs is public in its room."""
    found = private_imports(module_files())
    assert not found, "cross-room private imports (make the helper public in its room):\n" + "\n".join(found)


def test_the_private_import_check_sees_one(tmp_path):
    """The check is not blind: a copy of the tree with one cross-room private import is reported."""
    copy = copy_tree(tmp_path / "tree")
    lens = copy / "interp" / "observe" / "lens.py"
    lens.write_text(lens.read_text() + "\nfrom interp.intervene.engine import _check_metric  # noqa\n")
    added = set(private_imports(module_files(copy))) - set(private_imports(module_files()))
    assert added == {"interp.observe.lens imports interp.intervene.engine._check_metric"}, added


# The forward pass's maths, spelled outside the model: an attention core (the causal mask, the scale, the fused
# score kernel, rotary tables, a softmax over scores) or a block's sublayer called by hand (ln1/ln2/attn/mlp).
FORWARD_MATHS = re.compile(
    r"attn\.(mask|scale|rot_cos|rot_sin)\b|baddbmm|scores\.softmax|softmax\(-1\) @|block\.(mlp|attn|ln1|ln2)\("
)
HAND_LABEL = re.compile(r'f"L\{')  # a component label built by hand (L{l}H{h}, L{l}.mlp, ...)


def forward_maths_outside_model(root: Path = ROOT) -> list[str]:
    """Files of interp/ and dashboards/ that spell part of the forward pass instead of calling the model's pieces."""
    paths = [p for package in ("interp", "dashboards") for p in sorted((root / package).rglob("*.py"))]
    return [str(p.relative_to(root)) for p in paths if FORWARD_MATHS.search(p.read_text())]


def hand_made_labels(root: Path = ROOT) -> list[str]:
    """Files that build a component label by hand, outside the one module that makes them."""
    paths = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    home = root / "model" / "network" / "labels.py"
    return [str(p.relative_to(root)) for p in paths if p != home and HAND_LABEL.search(p.read_text())]


def test_the_forward_pass_is_written_once():
    """No attention core or sublayer is re-spelled under interp/ or dashboards/: they call the model's partial runs."""
    found = forward_maths_outside_model()
    print("files spelling the forward pass outside model/:", len(found), found)
    assert not found, f"forward-pass maths outside model/ (call the model's pieces instead): {found}"


def test_component_labels_are_made_in_one_place():
    """Every component label comes from model.network.labels.component_label, none is formatted by hand."""
    found = hand_made_labels()
    print("files building component labels by hand:", len(found), found)
    assert not found, f"labels built by hand (use component_label / parse_component): {found}"


def test_the_one_place_checks_see_a_violation(tmp_path):
    """The two checks are not blind: an attention core and a hand-made label added to a copy are reported."""
    copy_tree(tmp_path)
    lens = tmp_path / "interp" / "observe" / "lens.py"
    lens.write_text(lens.read_text() + '\n# scores.softmax(-1) of attn.mask\nLABEL = f"L{0}H{1}"\n')
    assert forward_maths_outside_model(tmp_path) == ["interp/observe/lens.py"]
    assert "interp/observe/lens.py" in hand_made_labels(tmp_path)


def test_import_rules_hold():
    """No import circle, model never imports interp/dashboards, tiers only import down, pages use one door."""
    problems = rule_violations(module_files())
    assert not problems, "the import rules are broken:\n" + "\n".join(problems)


def test_import_rules_catch_a_deliberate_circle(tmp_path):
    """The checker is not blind: a copy of the tree with one added circle (or a model -> interp import) fails."""
    copy = copy_tree(tmp_path / "tree")
    config = copy / "model" / "network" / "config.py"
    config.write_text(config.read_text() + "\nfrom model.network.minigpt import MiniGPT  # noqa\n")
    problems = rule_violations(module_files(copy))
    assert any(p.startswith("import circle:") for p in problems), f"an added circle went unseen: {problems}"
    print("deliberate circle reported as:", next(p for p in problems if p.startswith("import circle:")))
    tokenizer = copy / "model" / "network" / "tokenizer.py"
    tokenizer.write_text(tokenizer.read_text() + "\nimport interp.observe.dla  # noqa\n")
    assert any("model never imports interp" in p for p in rule_violations(module_files(copy)))


def test_tiers_name_real_rooms():
    """Every tier entry is a module or package that exists, and every module falls in a tier."""
    modules = module_files()
    for top, tiers in (("model", model.TIERS), ("interp", interp.TIERS), ("dashboards", dashboards.TIERS)):
        for prefix in (p for tier in tiers for p in tier):
            assert any(m == prefix or m.startswith(prefix + ".") for m in modules), f"{top}.TIERS names {prefix}"
        for name in (m for m in modules if m.startswith(top + ".")):
            assert tier_of(name, tiers) is not None, f"{name} is in no tier of {top}.TIERS"


def test_no_file_is_over_400_lines():
    """One concept per room: no module of model/, interp/ or dashboards/ is over 400 lines."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in module_files().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (two concepts sharing a room?): {long}"


@pytest.mark.parametrize(
    "code",
    [
        "import interp",
        "import model",
        "from interp import direct_logit_attribution, head_sweep",  # names only: the modules load on first use
        "from interp.cli.main import build_parser; build_parser()",
        "from model.training.presets import PRESETS",
    ],
)
def test_light_imports_do_not_import_torch(code):
    """``import interp``, ``import model`` and building the ``minigpt`` parser import no torch (nor pandas)."""
    if "direct_logit_attribution" in code:
        code = "import interp; interp.__all__"  # `from interp import x` must load x; listing the names must not
    check = f"import sys; {code}; bad = [m for m in ('torch', 'pandas') if m in sys.modules]; assert not bad, bad"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{code!r} imported heavy modules: {result.stderr.strip().splitlines()[-1:]}"


def test_minigpt_help_imports_no_torch():
    """``minigpt --help`` answers without importing torch (the CLI imports the model inside each command)."""
    code = "import sys; from interp.cli import main; main(['--help'])"
    result = subprocess.run(
        [sys.executable, "-c", code + "\n" if False else code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "usage: minigpt" in result.stdout
    probe = "import sys, contextlib, io\nfrom interp.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
    probe += "    main(['--help'])\nassert 'torch' not in sys.modules\n"
    assert subprocess.run([sys.executable, "-c", probe], cwd=ROOT, timeout=120).returncode == 0


def test_public_names_resolve_to_their_defining_modules():
    """Every name in ``interp.__all__`` / ``model.__all__`` imports, and is defined where the table says."""
    for package in (interp, model):
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type) or (callable(value) and hasattr(value, "__code__")):  # classes and functions
                where = value.__module__
                assert where == package._EXPORTS[name], f"{package.__name__}.{name} lives in {where}"


def test_nothing_cites_a_file_outside_the_repository():
    """The repository is self-contained: no code or doc refers to a design file or folder outside it."""
    outside = re.compile("DESIGN" + r"\.md|\.\./" + "shared")  # spelled in pieces so this file names neither
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    hits = []
    for rel in tracked:
        path = ROOT / rel
        if path.suffix in (".py", ".md", ".toml", ".cfg", ".txt", "") and path.is_file():
            text = path.read_text(errors="ignore")
            hits += [f"{rel}: {m.group(0)}" for m in outside.finditer(text)]
    assert not hits, f"references outside the repository: {hits}"


def test_architecture_doc_names_real_files():
    """docs/ARCHITECTURE.md's concept table points at files that exist (``path/file.py`` in backticks)."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = doc[doc.index("## Where each concept lives") :]
    paths = re.findall(r"`((?:model|interp|dashboards)/[\w/]+\.py)`", table)
    assert len(paths) >= 30, f"the concept table names only {len(paths)} files"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"ARCHITECTURE.md names files that do not exist: {missing}"
