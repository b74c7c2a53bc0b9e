"""The one symmetric normalization, against a dense reference and against PyG's gcn_norm."""
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from idsf_pyg.data.graph import EDGE
from idsf_pyg.models.lightgcn import LightGCN
from idsf_pyg.nn.norm import symmetric_norm, symmetric_norm_csr


def dense_reference(edge_index, weight, n_rows, n_cols):
    a = torch.zeros(n_rows, n_cols, dtype=torch.float64)
    a.index_put_((edge_index[0], edge_index[1]), weight, accumulate=True)
    d_r, d_c = a.sum(1), a.sum(0)
    inv_r = torch.where(d_r > 0, d_r, torch.ones_like(d_r)).rsqrt() * (d_r > 0)
    inv_c = torch.where(d_c > 0, d_c, torch.ones_like(d_c)).rsqrt() * (d_c > 0)
    return inv_r[:, None] * a * inv_c[None, :]


def test_symmetric_norm_equals_dense_reference_with_repeats_and_isolated_nodes():
    g = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.randint(0, 7, (30,), generator=g), torch.randint(0, 9, (30,), generator=g)])
    ei[1][ei[1] == 8] = 0                       # column 8 has no entry at all
    w = torch.rand(30, generator=g, dtype=torch.float64) + 0.1
    w[ei[0] == 6] = 0.0                         # row 6 has only zero-weight entries: degree 0
    got = symmetric_norm_csr(ei, 7, 9, w).to_dense()
    torch.testing.assert_close(got, dense_reference(ei, w, 7, 9), rtol=1e-12, atol=0)
    assert torch.isfinite(got).all() and got[6].abs().sum() == 0
    ones = symmetric_norm(ei, None, 7, 9)
    assert ones.dtype == torch.float32
    torch.testing.assert_close(torch.sparse_coo_tensor(ei, ones.double(), (7, 9)).to_dense(),
                               dense_reference(ei, torch.ones(30, dtype=torch.float64), 7, 9))


def test_gradient_is_finite_at_a_zero_degree_and_matches_finite_differences():
    ei = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
    w = torch.tensor([1.0, 2.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    symmetric_norm(ei, w, 3, 3).sum().backward()
    assert torch.isfinite(w.grad).all()
    w2 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: symmetric_norm(ei[:, :3], x, 3, 3), (w2,))


def test_model_adjacency_equals_pyg_gcn_norm_with_and_without_self_loops():
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = 5, 6
    data[EDGE].edge_index = torch.tensor([[0, 0, 1, 2, 3, 3, 4], [0, 1, 1, 2, 3, 5, 5]])
    data[EDGE].edge_weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 1.0, 0.25])
    model = LightGCN.from_graph(data, embedding_dim=4, use_edge_weight=True)
    n = 11
    for loops in (False, True):
        for weighted in (False, True):
            w = torch.cat([data[EDGE].edge_weight] * 2) if weighted else None
            ei, ref_w = gcn_norm(model.homogeneous_edge_index(), w, n, add_self_loops=loops)
            ref = torch.sparse_coo_tensor(ei, ref_w, (n, n)).to_dense()
            got = model.normalized_adjacency(add_self_loops=loops, weighted=weighted).to_dense()
            torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)
