"""IDSF as a composition: a practitioner's propagation layer trains inside it (from Python and from the command
line) and is checked against a dense reference; runs and checkpoints of the flat model of earlier versions load."""
import pytest
import torch
import yaml

from experiments import train
from idsf_pyg import load_run
from idsf_pyg.cli import run_cli
from idsf_pyg.models import IDSF, IDSFContent, IDSFContrast, IDSFStructure
from idsf_pyg.models.idsf import FLAT_NAMES
from idsf_pyg.nn import IDSFConv
from idsf_pyg.train.checkpoint import optimizer_by_names


class DampedConv(IDSFConv):
    """A layer whose message differs from IDSFConv's: each neighbour's message is scaled by ``damping``."""

    damping = 0.5

    def message(self, x_j, edge_weight):
        return self.damping * super().message(x_j, edge_weight)


def tiny_graph(seed=0):
    g = torch.Generator().manual_seed(seed)
    edges = sorted({(u, i) for u in range(5) for i in range(4) if torch.rand(1, generator=g) < 0.5} | {(0, 0)})
    feats = {"text": torch.randn(5, 7, generator=g), "image": torch.randn(5, 3, generator=g)}
    return torch.tensor(edges).t(), feats


def dense_structure(model, adj, gamma, damping):
    """Eq. (7)-(10) with dense matrices, each neighbour sum scaled by ``damping`` (the plugged layer's message)."""
    du, di = adj.sum(1), adj.sum(0)
    inv = lambda d: torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))  # noqa: E731
    n_ui = damping * inv(du)[:, None] * adj * inv(di)[None, :]
    s, content = model.structure, model.content()
    item_reps, user_reps = [], []
    for m, part in content.modalities.items():
        items, users = part.projected, s.user_id.weight
        i_sum, u_sum = items, users
        for _ in range(s.num_layers):
            items, users = n_ui.t() @ users + gamma * part.id, n_ui @ items + gamma * s.user_id.weight
            i_sum, u_sum = i_sum + items, u_sum + users
        item_reps.append(i_sum / (s.num_layers + 1))
        user_reps.append(u_sum / (s.num_layers + 1))

    def att(module, reps):
        a = torch.softmax(torch.stack([torch.tanh(module.lin(r)) @ module.q for r in reps], 1), 1)
        return sum(a[:, k:k + 1] * r for k, r in enumerate(reps))
    return att(s.user_att, user_reps), att(s.item_att, item_reps), content.fused


@pytest.mark.parametrize("conv", [DampedConv, "tests.models.test_idsf_composition:DampedConv"])
def test_a_plugged_layer_with_its_own_message_gives_the_dense_reference(conv):
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3, conv=conv).double()
    assert type(model.structure.conv_to_item) is DampedConv and type(model.structure.conv_to_user) is DampedConv
    adj = torch.zeros(6, 5, dtype=torch.float64)
    adj[ei[0], ei[1]] = 1.0
    with torch.no_grad():
        ref_u, ref_i, fused = dense_structure(model, adj, 0.3, DampedConv.damping)
        out = model()
        torch.testing.assert_close(out.structure.user, ref_u)
        torch.testing.assert_close(out.structure.item, ref_i)
        u, i = model.embed()
        torch.testing.assert_close(u @ i.t(), ref_u @ (fused + ref_i).t())   # eq. (11)
        # The reference can fail: IDSFConv's own message is another function.
        plain = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3).double()
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(plain().structure.item, ref_i)


class WrappedConv(torch.nn.Module):
    """A layer that is not an IDSFConv (no neighbors_and_ids): the structural module calls it whole."""

    def __init__(self, gamma, normalize="sym", cached=False):
        super().__init__()
        self.inner = IDSFConv(gamma, normalize=normalize, cached=cached)
        self.calls = 0

    def reset_parameters(self):
        self.inner.reset_parameters()

    def forward(self, x, edge_index, x_id=None):
        self.calls += 1
        return self.inner(x, edge_index, x_id)


@pytest.mark.parametrize("normalization", ["sym", "row_self_loop"])
def test_a_layer_of_its_own_kind_is_called_whole_and_gives_the_same_model(normalization):
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    plain = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, normalization=normalization).double()
    torch.manual_seed(0)
    wrapped = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, normalization=normalization,
                                conv=WrappedConv).double()
    with torch.no_grad():
        torch.testing.assert_close(wrapped.embed()[1], plain.embed()[1])
    assert wrapped.structure.conv_to_item.calls == 2 * 2   # two modalities, two layers


def test_idsf_composed_by_hand_equals_the_one_from_options():
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    flat = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.5, tau=0.2, contrast_scope="batch",
                             conv=DampedConv)
    torch.manual_seed(0)
    composed = IDSF(6, 5, ei, IDSFContent(feats, 5, 4, initialize=False),
                    IDSFStructure(6, 5, ei, list(feats), 4, gamma=0.5, conv=DampedConv, initialize=False),
                    IDSFContrast(tau=0.2, scope="batch"))
    for (n1, p1), (n2, p2) in zip(flat.state_dict().items(), composed.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    batch = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1])
    torch.testing.assert_close(flat.loss(*batch)[0], composed.loss(*batch)[0], rtol=0, atol=0)


def test_a_bad_conv_spec_is_refused_with_the_spec_named():
    ei, feats = tiny_graph()
    for spec, words in (("no_such_package:Conv", "cannot import module"), ("idsf_pyg.nn:Nothing", "has no"),
                        ("IDSFConv", "package.module:Class"), ("idsf_pyg.nn:idsf_norm", "not a torch.nn.Module")):
        with pytest.raises(ValueError, match=words):
            IDSF.from_options(6, 5, ei, feats, embedding_dim=4, conv=spec)


def test_a_plugged_layer_trains_from_the_command_line_and_is_rebuilt_from_the_run(tmp_path, capsys):
    spec = "tests.models.test_idsf_composition:DampedConv"
    out = tmp_path / "damped"
    common = ["--no-progress", "--threads", "1", "--epochs", "2", "--set", "embedding_dim=16"]
    assert run_cli(train.main, [*common, "--set", f"structure.conv={spec}", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["config"]["model_args"]["structure"]["conv"] == spec
    assert saved["key_material"]["model_args"]["conv"] == spec
    run = load_run(out)
    assert type(run.model.structure.conv_to_item) is DampedConv
    # The default layer is left out of the key (the runs of earlier versions keep theirs); another layer is not.
    plain = tmp_path / "plain"
    assert run_cli(train.main, [*common, "--out", str(plain)]) == 0
    plain_cfg = yaml.safe_load((plain / "config.yaml").read_text())
    assert "conv" not in plain_cfg["key_material"]["model_args"] and plain_cfg["run_key"] != saved["run_key"]
    capsys.readouterr()
    assert run_cli(train.main, [*common, "--set", "conv=idsf_pyg.nn:Nothing", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "model_args.structure.conv" in err and "has no 'Nothing'" in err


def flat_state(model):
    """The model's state dict under the flat names of earlier versions (FLAT_NAMES read backwards)."""
    back = {new: old for old, new in FLAT_NAMES.items()}
    out = {}
    for k, v in model.state_dict().items():
        prefix = next((p for p in back if k.startswith(p)), None)
        out[k if prefix is None else back[prefix] + k[len(prefix):]] = v
    return out


def test_a_state_dict_of_the_flat_model_loads():
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    trained = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, structure_init="preference", trainable_features=True,
                                item_head="layernorm_mlp")
    legacy = flat_state(trained)
    assert "user_struct_att.q" in legacy and "raw_params.text" in legacy   # really the old names
    torch.manual_seed(1)
    fresh = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, structure_init="preference", trainable_features=True,
                              item_head="layernorm_mlp")
    fresh.load_state_dict(legacy)
    for k, v in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert IDSF.upgrade_state_dict(legacy).keys() == trained.state_dict().keys()


def test_the_optimizer_state_follows_parameter_names_when_the_order_changed():
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    opt.step()
    names = [n for n, _ in model.named_parameters()]
    state = opt.state_dict()
    # The same checkpoint as a model that listed its parameters in reverse order would have saved it.
    reversed_state = {"state": {i: state["state"][len(names) - 1 - i] for i in range(len(names))},
                      "param_groups": state["param_groups"]}
    saved_model = {n: model.state_dict()[n] for n in reversed(names)}
    remapped = optimizer_by_names(reversed_state, saved_model, model)
    for i, name in enumerate(names):
        assert torch.equal(remapped["state"][i]["exp_avg"], state["state"][i]["exp_avg"]), name
    assert optimizer_by_names(state, model.state_dict(), model) is state   # same order: untouched
