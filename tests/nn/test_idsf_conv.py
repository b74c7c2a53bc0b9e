"""IDSFConv against dense float64 references: every normalization, weighted and repeated edges, isolated
nodes, every adjacency type (same output and gradients), caching, subclassing, HeteroConv, torch.compile."""
import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import WITH_TORCH_SPARSE, SparseTensor

from idsf_pyg.nn import IDSFConv, idsf_norm

NORMS = ["sym", "row_self_loop", "none"]
GRAPHS = [(7, 5, 12, 0), (20, 9, 40, 1), (3, 11, 8, 2), (50, 40, 300, 3)]


def random_bipartite(n_src, n_dst, n_edges, seed, repeats=0):
    """Random edges with the last source and the last target isolated, plus ``repeats`` repeated edges."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm((n_src - 1) * (n_dst - 1), generator=g)[:n_edges]
    src, dst = pairs // (n_dst - 1), pairs % (n_dst - 1)
    ei = torch.stack([src, dst])
    return torch.cat([ei, ei[:, :repeats]], dim=1)


def dense_reference(x, x_dst, ei, w, x_id, gamma, normalize, n_src, n_dst):
    """The layer's math on a dense [n_dst, n_src] matrix (repeated edges add up)."""
    a = torch.zeros(n_dst, n_src, dtype=torch.float64)
    a.index_put_((ei[1], ei[0]), torch.ones(ei.size(1), dtype=torch.float64) if w is None else w, accumulate=True)
    deg_dst, deg_src = a.sum(1), a.sum(0)
    if normalize == "sym":
        inv_dst = torch.where(deg_dst > 0, deg_dst.pow(-0.5), torch.zeros_like(deg_dst))
        inv_src = torch.where(deg_src > 0, deg_src.pow(-0.5), torch.zeros_like(deg_src))
        out = (inv_dst[:, None] * a * inv_src[None, :]) @ x
    elif normalize == "row_self_loop":
        out = (a @ x + x_dst) / (deg_dst[:, None] + 1)
    else:
        out = a @ x
    return out + gamma * x_id, a


def adjacency(kind, ei, w, n_src, n_dst):
    """The same weighted graph as (graph argument, edge_weight argument) for each input type."""
    if kind == "edge_index":
        return ei, w
    if kind == "EdgeIndex":
        return EdgeIndex(ei, sparse_size=(n_src, n_dst)), w
    vals = torch.ones(ei.size(1), dtype=torch.float64) if w is None else w
    coo = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), vals, (n_dst, n_src)).coalesce()
    if kind == "csr":
        return coo.to_sparse_csr(), None
    if kind == "coo":
        return coo, None
    if kind == "SparseTensor":
        return SparseTensor(row=ei[1], col=ei[0], value=vals, sparse_sizes=(n_dst, n_src)), None
    raise ValueError(kind)


KINDS = ["edge_index", "EdgeIndex", "csr", "coo",
         pytest.param("SparseTensor", marks=pytest.mark.skipif(not WITH_TORCH_SPARSE,
                                                               reason="torch_sparse is not installed"))]


def inputs(n_src, n_dst, seed, weighted, f=6):
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n_src, f, dtype=torch.float64, generator=g)
    x_dst = torch.randn(n_dst, f, dtype=torch.float64, generator=g)
    x_id = torch.randn(n_dst, f, dtype=torch.float64, generator=g)
    return x, x_dst, x_id


@pytest.mark.parametrize("n_src,n_dst,n_edges,seed", GRAPHS)
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_dense_reference(n_src, n_dst, n_edges, seed, normalize, weighted, kind):
    gamma = 0.3
    ei = random_bipartite(n_src, n_dst, n_edges, seed, repeats=3 if kind in ("edge_index", "EdgeIndex") else 0)
    w = torch.rand(ei.size(1), dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2 + 0.1 \
        if weighted else None
    x, x_dst, x_id = inputs(n_src, n_dst, seed, weighted)
    expected, _ = dense_reference(x, x_dst, ei, w, x_id, gamma, normalize, n_src, n_dst)
    graph, weight = adjacency(kind, ei, w, n_src, n_dst)
    out = IDSFConv(gamma, normalize=normalize)((x, x_dst), graph, x_id, edge_weight=weight,
                                               size=(n_src, n_dst) if kind == "edge_index" else None)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    # The isolated last target: only its self terms, never NaN.
    self_part = x_dst[-1] if normalize == "row_self_loop" else 0.0
    torch.testing.assert_close(out[-1], self_part + gamma * x_id[-1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("kind", KINDS[1:])
def test_every_adjacency_type_gives_the_gradients_of_edge_index(normalize, kind):
    n_src, n_dst = 9, 7
    ei = random_bipartite(n_src, n_dst, 20, 4)
    w = torch.rand(ei.size(1), dtype=torch.float64) + 0.5
    conv = IDSFConv(0.4, normalize=normalize)

    def grads(graph, weight):
        x, x_dst, x_id = (t.clone().requires_grad_() for t in inputs(n_src, n_dst, 1, True))
        out = conv((x, x_dst), graph, (None, x_id), edge_weight=weight, size=(n_src, n_dst))
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return out.detach(), x.grad, x_dst.grad, x_id.grad

    ref = grads(ei, w)
    got = grads(*adjacency(kind, ei, w, n_src, n_dst))
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("normalize", NORMS)
def test_gradcheck_including_edge_weights(normalize):
    n_src, n_dst = 6, 5
    ei = random_bipartite(n_src, n_dst, 12, 4, repeats=2)
    conv = IDSFConv(0.3, normalize=normalize)
    x, x_dst, x_id = (t.requires_grad_() for t in inputs(n_src, n_dst, 2, True, f=3))
    w = (torch.rand(ei.size(1), dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c, d: conv((a, b), ei, c, edge_weight=d), (x, x_dst, x_id, w))


def test_idsf_norm_values_by_hand():
    # src 0 has 2 edges, dst 0 has 2 edges, src 1 and dst 1 have one.
    ei = torch.tensor([[0, 0, 1], [0, 1, 0]])
    _, w, self_w = idsf_norm(ei, None, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([1 / 2, 1 / 2 ** 0.5, 1 / 2 ** 0.5], dtype=torch.float64))
    assert self_w is None
    # Weighted: d_src = (3 + 2, 1), d_dst = (3 + 1, 2) for weights (3, 2, 1).
    weights = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    _, w, _ = idsf_norm(ei, weights, 2, 2)
    torch.testing.assert_close(w, torch.tensor([3 / (5 ** 0.5 * 4 ** 0.5), 2 / (5 ** 0.5 * 2 ** 0.5),
                                                1 / (1 * 4 ** 0.5)], dtype=torch.float64))
    _, w, self_w = idsf_norm(ei, weights, 2, 2, "row_self_loop")
    torch.testing.assert_close(w, torch.tensor([3 / 5, 2 / 3, 1 / 5], dtype=torch.float64))
    torch.testing.assert_close(self_w, torch.tensor([1 / 5, 1 / 3], dtype=torch.float64))
    # A zero-weight edge gives a zero degree: no inf, no NaN.
    _, w, _ = idsf_norm(torch.tensor([[0], [0]]), torch.zeros(1), 1, 1)
    assert w.tolist() == [0.0]


def test_cached_normalization_behaves_like_gcnconv():
    x = torch.randn(6, 2, dtype=torch.float64)
    zeros = torch.zeros(5, 2, dtype=torch.float64)
    for kind in ("edge_index", "csr"):
        ei = random_bipartite(6, 5, 10, 6)
        conv = IDSFConv(0.0, cached=True)
        first = conv(x, adjacency(kind, ei, None, 6, 5)[0], size=(6, 5))
        # A different graph: a cached layer keeps using the first normalization ...
        other = random_bipartite(6, 5, 10, 9)
        torch.testing.assert_close(conv(x, adjacency(kind, other, None, 6, 5)[0], size=(6, 5)), first)
        # ... until reset_parameters() clears the cache.
        conv.reset_parameters()
        expected, _ = dense_reference(x, None, other, None, zeros, 0.0, "sym", 6, 5)
        torch.testing.assert_close(conv(x, adjacency(kind, other, None, 6, 5)[0], size=(6, 5)), expected,
                                   atol=1e-10, rtol=0)


class RecencyConv(IDSFConv):
    """A subclass that changes the message: messages of edges older than a cut are dropped."""

    def __init__(self, gamma, cut):
        super().__init__(gamma)
        self.cut = cut
        self.calls = 0

    def message(self, x_j, edge_weight, age):  # `age` comes from forward(..., age=...) through propagate
        self.calls += 1
        return super().message(x_j, edge_weight) * (age <= self.cut).to(x_j.dtype).view(-1, 1)


def test_a_subclass_message_is_called_for_every_adjacency_type():
    n_src, n_dst = 8, 6
    ei = random_bipartite(n_src, n_dst, 16, 3)
    age = torch.arange(ei.size(1)) % 4
    x, _, x_id = inputs(n_src, n_dst, 3, False)
    conv = RecencyConv(0.2, cut=1)
    assert not conv.fuse
    out = conv(x, ei, x_id, size=(n_src, n_dst), age=age)
    assert conv.calls == 1
    # By hand: the normalization of the full graph, messages of old edges zeroed.
    _, w, _ = idsf_norm(ei, None, n_src, n_dst, dtype=torch.float64)
    expected = torch.zeros(n_dst, x.size(1), dtype=torch.float64).index_add_(
        0, ei[1], x[ei[0]] * (w * (age <= 1)).view(-1, 1)) + 0.2 * x_id
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    # A sparse input goes through message() too (the CSR orders edges by target, so give the ages in that order).
    csr, _ = adjacency("csr", ei, None, n_src, n_dst)
    order = torch.argsort(ei[1] * n_src + ei[0])
    torch.testing.assert_close(conv(x, csr, x_id, age=age[order]), expected, atol=1e-12, rtol=0)
    assert conv.calls == 2


def test_repr_and_errors():
    assert repr(IDSFConv(0.3)) == "IDSFConv(gamma=0.3, normalize='sym', cached=False)"
    assert IDSFConv(0.3, normalize=False).normalize == "none" and IDSFConv(0.3, normalize=True).normalize == "sym"
    assert isinstance(IDSFConv(0.3), MessagePassing)
    conv = IDSFConv(0.3)
    x, ei = torch.randn(4, 2), torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="x_id"):
        conv(x, ei, size=(4, 3))
    with pytest.raises(ValueError, match="x_id must have shape"):
        conv(x, ei, torch.randn(2, 2), size=(4, 3))
    with pytest.raises(ValueError, match="normalize must be one of"):
        IDSFConv(0.3, normalize="row")
    with pytest.raises(ValueError, match="x=\\(x_src, x_dst\\)"):
        IDSFConv(0.0, normalize="row_self_loop")(x, ei, size=(4, 3))
    with pytest.raises(ValueError, match="one weight per edge"):
        IDSFConv(0.0)(x, ei, edge_weight=torch.ones(3), size=(4, 3))
    csr = torch.ones(3, 4).to_sparse_csr()
    with pytest.raises(ValueError, match="values"):
        IDSFConv(0.0)(x, csr, edge_weight=torch.ones(12))
    with pytest.raises(ValueError, match="does not match"):
        IDSFConv(0.0)(x, csr, size=(4, 5))


def test_torch_compile_equals_eager():
    n_src, n_dst = 12, 9
    ei = random_bipartite(n_src, n_dst, 30, 11)
    w = torch.rand(ei.size(1)) + 0.5
    x, x_id = torch.randn(n_src, 8), torch.randn(n_dst, 8)
    conv = IDSFConv(0.3)
    eager = conv(x, ei, x_id, edge_weight=w, size=(n_src, n_dst))
    try:
        # aot_eager: dynamo's graph capture and AOT autograd, without a C++ compiler (CI has none to spare).
        compiled = torch.compile(conv, backend="aot_eager", fullgraph=False)
        out = compiled(x, ei, x_id, edge_weight=w, size=(n_src, n_dst))
    except Exception as e:  # pragma: no cover - depends on the installed torch
        pytest.skip(f"torch.compile is not usable with this torch on this machine: {type(e).__name__}: {e}")
    torch.testing.assert_close(out, eager)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    ei = random_bipartite(30, 20, 100, 8)
    x, x_id = torch.randn(30, 8), torch.randn(20, 8)
    w = torch.rand(ei.size(1))
    a = torch.zeros(20, 30)
    a.index_put_((ei[1], ei[0]), w, accumulate=True)
    conv = IDSFConv(0.3)
    cpu = conv(x, ei, x_id, edge_weight=w, size=(30, 20))
    torch.testing.assert_close(conv(x.cuda(), ei.cuda(), x_id.cuda(), edge_weight=w.cuda(), size=(30, 20)).cpu(), cpu)
    torch.testing.assert_close(conv(x.cuda(), a.to_sparse_csr().cuda(), x_id.cuda()).cpu(), cpu)
