"""Step-level equality with the authors' code: `IDSF` under the `official` preset, started from the official
model's initial parameters and fed the same batches, gives the official code's loss parts, every gradient and
the parameters after three Adam steps (float64).

The fixture (tests/fixtures/official_idsf_steps.pt) was made by the official code itself, outside this
repository; how is in tests/fixtures/README.md. This test reads the preset from
experiments/configs/presets/official.yaml, so a change of the preset is checked too.
"""
from pathlib import Path

import pytest
import torch
import yaml

from idsf_pyg.models import IDSF
from idsf_pyg.nn import IDSFConv

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "official_idsf_steps.pt"
PRESET = ROOT / "experiments" / "configs" / "presets" / "official.yaml"

#: The official model's parameter names (models.py: MIDGCN) -> IDSF's, modalities "image" and "text".
#: The official code enhances the image with item_iid_embedding and the text with item_tid_embedding.
NAMES = {
    "user_id_embedding.weight": "structure.user_id.weight",
    "item_iid_embedding.weight": "content.item_id.image.weight",
    "item_tid_embedding.weight": "content.item_id.text.weight",
    "user_preference_image.weight": "structure.user_pref.image.weight",
    "user_preference_text.weight": "structure.user_pref.text.weight",
    "image_embedding.weight": "content.raw_params.image",
    "text_embedding.weight": "content.raw_params.text",
    "fusion_model.image2item.weight": "content.proj.image.weight",
    "fusion_model.image2item.bias": "content.proj.image.bias",
    "fusion_model.text2item.weight": "content.proj.text.weight",
    "fusion_model.text2item.bias": "content.proj.text.bias",
    "content2item.0.weight": "head_c.0.weight",
    "content2item.0.bias": "head_c.0.bias",
    "content2item.2.weight": "head_c.2.weight",
    "content2item.2.bias": "head_c.2.bias",
    "structure2item.0.weight": "head_s.0.weight",
    "structure2item.0.bias": "head_s.0.bias",
    "structure2item.2.weight": "head_s.2.weight",
    "structure2item.2.bias": "head_s.2.bias",
}
#: The official attention units (EmbeddingTwoSemantic: Sequential(Linear(d, d), Tanh, Linear(d, 1, bias=False)))
#: -> IDSF's ModalityAttention (lin, q).
ATTENTIONS = {"fusion_model.image_item": "content.enhance_att.image",
              "fusion_model.text_item": "content.enhance_att.text", "fusion_model.fusion_item": "content.fuse_att",
              "item_fusion": "structure.item_att", "user_fusion": "structure.user_att"}
for official, ours in ATTENTIONS.items():
    NAMES.update({f"{official}.query.0.weight": f"{ours}.lin.weight", f"{official}.query.0.bias": f"{ours}.lin.bias",
                  f"{official}.query.2.weight": f"{ours}.q"})


class Float32Adjacency(IDSFConv):
    """The official code propagates over a float32 adjacency (its Trainer's ``.float()``; the fixture's driver ran
    the model in float64 over that adjacency widened, ``.float().double()``): normalize in float32, then widen."""

    def normalize_adjacency(self, adj, edge_weight, n_src, n_dst, dtype):
        csr, weight, self_w = super().normalize_adjacency(adj, edge_weight, n_src, n_dst, torch.float32)
        return csr.to(dtype), weight, None if self_w is None else self_w.to(dtype)


def ours(params, name):
    return params[NAMES[name]]


@pytest.fixture(scope="module")
def fixture():
    if not FIXTURE.is_file():
        pytest.fail(f"{FIXTURE} is missing (see tests/fixtures/README.md)")
    return torch.load(FIXTURE, weights_only=True)


def build(fx, kernel, change=None):
    preset = {**yaml.safe_load(PRESET.read_text())["model_args"], **(change or {})}
    settings = fx["settings"]
    edges = torch.tensor([(int(u), i) for u, items in fx["train"].items() for i in items]).t()
    model = IDSF.from_options(fx["n_users"], fx["n_items"], edges, {"image": fx["features"]["image"], "text": fx["features"]["text"]},
                 **{**preset, "reg_weight": settings["reg_weight"]}, embedding_dim=settings["embedding_dim"],
                 num_layers=settings["num_layers"], gamma=settings["gamma"], beta=settings["beta"], tau=settings["tau"],
                 contrast_kernel=kernel, conv=Float32Adjacency).double()
    params = dict(model.named_parameters())
    assert set(NAMES.values()) == set(params), "every IDSF parameter has an official counterpart, and only those"
    assert set(NAMES) == set(fx["init"])
    with torch.no_grad():
        for name, value in fx["init"].items():
            ours(params, name).copy_(value.view_as(ours(params, name)))
    return model, params


@pytest.mark.parametrize("kernel", ["blockwise", "dense"])
def test_official_preset_steps_equal_the_official_code(fixture, kernel):
    official_steps(fixture, kernel)


@pytest.mark.parametrize("change", [{"item_head": "sum"}, {"normalization": "sym"}, {"structure_init": "id"},
                                    {"contrast_pairs": "paper"}, {"reg_scope": "params"},
                                    {"user_id_self_term": False}], ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))}")
def test_each_official_behaviour_of_the_preset_matters(fixture, change):
    """The comparison can fail: the preset with any one of these behaviours changed no longer reproduces the
    official steps (other parameters, or another loss or gradient)."""
    with pytest.raises(AssertionError):
        official_steps(fixture, "dense", change)


def official_steps(fixture, kernel, change=None):
    """Runs the fixture's steps on IDSF under the preset (``change`` applied) and asserts they equal the official."""
    model, params = build(fixture, kernel, change)
    opt = torch.optim.Adam(model.parameters(), lr=fixture["settings"]["lr"])
    for k, ((users, pos, neg), expected) in enumerate(zip(fixture["batches"], fixture["steps"])):
        opt.zero_grad()
        loss, parts = model.loss(users, pos, neg)
        for part in ("bpr", "reg", "contrast"):
            assert float(parts[part]) == pytest.approx(expected[part], rel=1e-10, abs=1e-12), (k, part)
        assert float(loss.detach()) == pytest.approx(expected["loss"], rel=1e-10), k
        loss.backward()
        for name, grad in expected["grads"].items():
            mine = ours(params, name).grad
            torch.testing.assert_close(mine, grad.view_as(mine), rtol=1e-8, atol=1e-12, msg=f"step {k}: {name}")
        opt.step()
    for name, value in fixture["after"].items():
        torch.testing.assert_close(ours(params, name).detach(), value.view_as(ours(params, name)), rtol=1e-8,
                                   atol=1e-12, msg=f"after {len(fixture['steps'])} steps: {name}")


def test_the_paper_defaults_differ_from_the_official_step(fixture):
    """The comparison can fail: the paper's own settings (no preset) give another first loss."""
    settings = fixture["settings"]
    edges = torch.tensor([(int(u), i) for u, items in fixture["train"].items() for i in items]).t()
    model = IDSF.from_options(fixture["n_users"], fixture["n_items"], edges, dict(fixture["features"]), embedding_dim=8,
                 num_layers=2, gamma=settings["gamma"], beta=settings["beta"]).double()
    users, pos, neg = fixture["batches"][0]
    _, parts = model.loss(users, pos, neg)
    assert float(parts["contrast"]) != pytest.approx(fixture["steps"][0]["contrast"], rel=1e-3)
