"""Every baseline: trains a few steps on the synthetic graph, every parameter gets a gradient, scores
have the right shape; LightGCN's propagation equals PyG's LightGCN."""
import math

import pytest
import torch
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from experiments.train import model_defaults
from idsf_pyg.data import make_synthetic
from idsf_pyg.models import MODELS, LightGCN
from idsf_pyg.train import TrainConfig, train

BASELINES = sorted(m for m in MODELS if m != "idsf")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_users=60, num_items=80, min_per_user=5, max_per_user=12, seed=1)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_gradients_scores_and_short_training(name, data):
    torch.manual_seed(0)
    args = dict(model_defaults(name)["model_args"])
    model = MODELS[name].from_graph(data, **args)
    model.train()
    users, pos, neg = torch.arange(12), torch.arange(12) * 3 % 80, torch.arange(12) * 5 % 80 + 1
    loss, logs = model.loss(users, pos, neg)
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in logs.values())
    loss.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {pname} has no gradient"
    model.eval()
    assert model.score(torch.tensor([0, 5, 7])).shape == (3, 80)
    res = train(model, data, TrainConfig(epochs=2, batch_size=64, lr=1e-3), progress=False)
    assert res.epochs_run == 2 and 0 <= res.test["recall@20"] <= 1


def test_lightgcn_propagation_matches_pyg(data):
    torch.manual_seed(0)
    ours = LightGCN.from_graph(data, embedding_dim=16, num_layers=3)
    ref = PyGLightGCN(ours.num_users + ours.num_items, 16, num_layers=3)
    ref.embedding.weight.data.copy_(ours.embedding.weight.data)
    expected = ref.get_embedding(ours.homogeneous_edge_index())
    u, i = ours.embed()
    torch.testing.assert_close(torch.cat([u, i]), expected, atol=1e-6, rtol=1e-5)


def test_weighted_lightgcn_matches_pyg_with_edge_weights(data):
    from idsf_pyg.data import EDGE
    w = torch.rand(data[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(0)) * 4 + 0.5
    data = data.clone()
    data[EDGE].edge_weight = w
    torch.manual_seed(0)
    ours = LightGCN.from_graph(data, embedding_dim=16, num_layers=2, use_edge_weight=True)
    ref = PyGLightGCN(ours.num_users + ours.num_items, 16, num_layers=2)
    ref.embedding.weight.data.copy_(ours.embedding.weight.data)
    expected = ref.get_embedding(ours.homogeneous_edge_index(), torch.cat([w, w]))
    u, i = ours.embed()
    torch.testing.assert_close(torch.cat([u, i]), expected, atol=1e-6, rtol=1e-5)
    # Off by default: the same graph without use_edge_weight is the unweighted LightGCN.
    torch.manual_seed(0)
    plain = LightGCN.from_graph(data, embedding_dim=16, num_layers=2)
    torch.testing.assert_close(torch.cat(plain.embed()), ref.get_embedding(ours.homogeneous_edge_index()),
                               atol=1e-6, rtol=1e-5)


def test_freedom_item_graph_is_the_weighted_sum_of_knn_graphs(data):
    from idsf_pyg.models import FREEDOM
    from idsf_pyg.models.base import knn_graph_from_features
    from idsf_pyg.nn.norm import symmetric_norm_csr as sym_norm_csr
    model = FREEDOM.from_graph(data, knn_k=5, modality_weights={"view_a": 0.3, "view_b": 0.7})
    dense = [sym_norm_csr(knn_graph_from_features(data["item"][f"x_{m}"], 5), 80, 80).to_dense()
             for m in ("view_a", "view_b")]
    torch.testing.assert_close(model.item_adj.to_dense(), 0.3 * dense[0] + 0.7 * dense[1])
