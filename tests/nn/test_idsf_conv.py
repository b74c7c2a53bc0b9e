"""IDSFConv against a dense float64 reference D_dst^{-1/2} A D_src^{-1/2} X + γ X_id."""
import pytest
import torch

from idsf_pyg.nn import IDSFConv, bipartite_norm


def random_bipartite(n_src, n_dst, n_edges, seed):
    """Random distinct edges, with the last source and last target left isolated."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm((n_src - 1) * (n_dst - 1), generator=g)[:n_edges]
    src, dst = pairs // (n_dst - 1), pairs % (n_dst - 1)
    return torch.stack([src, dst])


def dense_reference(x, edge_index, x_id, gamma, n_src, n_dst):
    a = torch.zeros(n_dst, n_src, dtype=torch.float64)
    a[edge_index[1], edge_index[0]] = 1.0
    deg_dst, deg_src = a.sum(1), a.sum(0)
    inv_dst = torch.where(deg_dst > 0, deg_dst.pow(-0.5), torch.zeros_like(deg_dst))
    inv_src = torch.where(deg_src > 0, deg_src.pow(-0.5), torch.zeros_like(deg_src))
    norm = inv_dst[:, None] * a * inv_src[None, :]
    return norm @ x + gamma * x_id, a


GRAPHS = [(7, 5, 12, 0), (20, 9, 40, 1), (3, 11, 8, 2), (50, 40, 300, 3)]


@pytest.mark.parametrize("n_src,n_dst,n_edges,seed", GRAPHS)
@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_matches_dense_reference_for_edge_index_and_csr(n_src, n_dst, n_edges, seed, gamma):
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n_src, 6, dtype=torch.float64, generator=g)
    x_id = torch.randn(n_dst, 6, dtype=torch.float64, generator=g)
    ei = random_bipartite(n_src, n_dst, n_edges, seed)
    expected, a = dense_reference(x, ei, x_id, gamma, n_src, n_dst)

    conv = IDSFConv(gamma)
    out_ei = conv(x, ei, x_id, size=(n_src, n_dst))
    out_csr = conv(x, a.to_sparse_csr(), x_id)
    torch.testing.assert_close(out_ei, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(out_csr, expected, atol=1e-10, rtol=0)
    # Isolated targets (the last one) get exactly the γ·ID term, never NaN.
    assert torch.isfinite(out_ei).all()
    torch.testing.assert_close(out_ei[-1], gamma * x_id[-1], atol=1e-12, rtol=0)


def test_csr_values_are_ignored_and_coo_is_accepted():
    x = torch.randn(6, 3, dtype=torch.float64)
    ei = random_bipartite(6, 4, 10, 7)
    expected, a = dense_reference(x, ei, torch.zeros(4, 3, dtype=torch.float64), 0.0, 6, 4)
    conv = IDSFConv(0.0)
    torch.testing.assert_close(conv(x, (3.0 * a).to_sparse_csr()), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(conv(x, a.to_sparse()), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("use_csr", [False, True])
def test_gradcheck(use_csr):
    n_src, n_dst = 6, 5
    ei = random_bipartite(n_src, n_dst, 12, 4)
    a = torch.zeros(n_dst, n_src, dtype=torch.float64)
    a[ei[1], ei[0]] = 1.0
    graph = a.to_sparse_csr() if use_csr else ei
    conv = IDSFConv(0.3)
    x = torch.randn(n_src, 3, dtype=torch.float64, requires_grad=True)
    x_id = torch.randn(n_dst, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, i: conv(s, graph, i, size=(n_src, n_dst)), (x, x_id))


def test_row_self_loop_normalization_matches_dense_reference():
    n_src, n_dst, gamma = 8, 6, 0.5
    ei = random_bipartite(n_src, n_dst, 15, 5)
    x = torch.randn(n_src, 4, dtype=torch.float64)
    x_dst = torch.randn(n_dst, 4, dtype=torch.float64)
    x_id = torch.randn(n_dst, 4, dtype=torch.float64)
    a = torch.zeros(n_dst, n_src, dtype=torch.float64)
    a[ei[1], ei[0]] = 1.0
    deg = a.sum(1, keepdim=True)
    expected = (a @ x + x_dst) / (deg + 1) + gamma * x_id
    conv = IDSFConv(gamma, normalization="row_self_loop")
    torch.testing.assert_close(conv((x, x_dst), ei, x_id), expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(conv((x, x_dst), a.to_sparse_csr(), x_id), expected, atol=1e-10, rtol=0)


def test_cached_normalization_is_computed_once():
    ei = random_bipartite(6, 5, 10, 6)
    x = torch.randn(6, 2, dtype=torch.float64)
    conv = IDSFConv(0.0, cached=True)
    first = conv(x, ei, size=(6, 5))
    # A different graph: a cached layer keeps using the first normalization ...
    other = random_bipartite(6, 5, 10, 9)
    torch.testing.assert_close(conv(x, other, size=(6, 5)), first)
    # ... until reset_parameters() clears the cache.
    conv.reset_parameters()
    expected, _ = dense_reference(x, other, torch.zeros(5, 2, dtype=torch.float64), 0.0, 6, 5)
    torch.testing.assert_close(conv(x, other, size=(6, 5)), expected, atol=1e-10, rtol=0)


def test_bipartite_norm_values():
    # src 0 has 2 edges, dst 0 has 2 edges, src 1 and dst 1 have one.
    ei = torch.tensor([[0, 0, 1], [0, 1, 0]])
    w = bipartite_norm(ei, 2, 2, dtype=torch.float64)
    expected = torch.tensor([1 / 2, 1 / 2 ** 0.5, 1 / 2 ** 0.5], dtype=torch.float64)
    torch.testing.assert_close(w, expected)


def test_errors_and_repr():
    conv = IDSFConv(0.3)
    assert repr(conv) == "IDSFConv(gamma=0.3, normalization='sym', cached=False)"
    x, ei = torch.randn(4, 2), torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="x_id"):
        conv(x, ei, size=(4, 3))
    with pytest.raises(ValueError, match="x_id must have shape"):
        conv(x, ei, torch.randn(2, 2), size=(4, 3))
    with pytest.raises(ValueError, match="normalization"):
        IDSFConv(0.3, normalization="row")
    with pytest.raises(ValueError, match="x=\\(x_src, x_dst\\)"):
        IDSFConv(0.0, normalization="row_self_loop")(x, ei, size=(4, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    ei = random_bipartite(30, 20, 100, 8)
    x, x_id = torch.randn(30, 8), torch.randn(20, 8)
    a = torch.zeros(20, 30)
    a[ei[1], ei[0]] = 1.0
    conv = IDSFConv(0.3)
    cpu = conv(x, ei, x_id, size=(30, 20))
    torch.testing.assert_close(conv(x.cuda(), ei.cuda(), x_id.cuda(), size=(30, 20)).cpu(), cpu)
    torch.testing.assert_close(conv(x.cuda(), a.to_sparse_csr().cuda(), x_id.cuda()).cpu(), cpu)
