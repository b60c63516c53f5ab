"""The esnlib modules import each other without cycles (module-level and in-function imports alike), and the
prompt texts of the real-model adapters live in esnlib/prompts.py only."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "esnlib"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the esnlib modules it imports anywhere in its body (the package root itself excluded)."""
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[mod] |= {n for n in names if n in mods and n not in (mod, "esnlib")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str):
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_in_function_imports():
    g = import_graph()
    assert "esnlib.models._hf" in g["esnlib.judges.qwen3_omni"]  # imported inside Qwen3OmniJudge.__init__
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}; move what both sides need into a lower module"


def test_prompt_texts_only_in_prompts_module():
    # the fixed EVC instruction and the SER question are written once (esnlib/prompts.py)
    texts = ("You are an emotional voice conversion system", "What is the emotion of the speaker")
    found = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
             if any(t in p.read_text(encoding="utf-8") for t in texts)]
    assert found == ["esnlib/prompts.py"]
    words = re.compile(r"^EMOTION_WORDS\s*=", re.M)
    defs = sorted(str(p.relative_to(ROOT)) for p in PKG.rglob("*.py") if words.search(p.read_text(encoding="utf-8")))
    # the demo LALM keeps its own prompt words: they are part of its training data (docs/architecture.md)
    assert defs == ["esnlib/models/demo.py", "esnlib/prompts.py"]
