"""The package's layers: the models, the layers and the losses never import the training code (the trainer drives
them, not the other way round), checked on the source of every module."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "idsf_pyg"
BELOW_TRAINING = ["models", "nn", "losses.py", "similarity_lse.py", "parallel.py", "options.py", "eval", "data"]


def imported_modules(source: str, package: str):
    """Every module ``source`` (a module of ``package``) imports, as a dotted name (relative and lazy imports too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])


def test_nothing_below_the_trainer_imports_it():
    files = [f for part in BELOW_TRAINING for f in ((PACKAGE / part).rglob("*.py") if (PACKAGE / part).is_dir()
                                                    else [PACKAGE / part])]
    assert len(files) > 20
    upward = [(str(f.relative_to(PACKAGE)), m) for f in files
              for m in imported_modules(f.read_text(encoding="utf-8"), package_of(f))
              if m == "idsf_pyg.train" or m.startswith("idsf_pyg.train.")]
    assert upward == []


def test_the_check_sees_relative_and_lazy_imports():
    """The check can fail: a lazy relative import of the trainer inside a function of idsf_pyg.models is found."""
    probe = "def f():\n    from ..train.distributed import batch_share\n    return batch_share\n"
    assert list(imported_modules(probe, "idsf_pyg.models")) == ["idsf_pyg.train.distributed"]
    assert list(imported_modules("from .idsf import IDSF\n", "idsf_pyg.models")) == ["idsf_pyg.models.idsf"]
