"""The README's worked examples run as written (so the documentation cannot drift from the code)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no example {name!r}"
    return match.group(1)


def test_extend_the_layer_example_runs():
    code = example("extend-the-layer")
    namespace: dict = {}
    exec(compile(code, f"README.md:{'extend-the-layer'}", "exec"), namespace)  # noqa: S102 - our own README
    # What it claims: the decay-weighted output differs from the unweighted one, and the subclass learns.
    conv, users, edge_index, item_ids = (namespace[k] for k in ("conv", "users", "edge_index", "item_ids"))
    assert not namespace["items"].allclose(conv(users, edge_index, item_ids))
    assert namespace["gated"].gate.weight.grad.abs().sum() > 0
