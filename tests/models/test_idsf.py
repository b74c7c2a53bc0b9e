"""IDSF against dense-matrix re-computations of eq. (7)–(11), gradients, ablations and options."""
import pytest
import torch

from idsf_pyg.data import EDGE, make_synthetic
from idsf_pyg.models import BPRMF, IDSF
from idsf_pyg.models.idsf_content import Content, ModalityContent


def tiny_graph(n_users=6, n_items=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    edges = [(u, i) for u in range(n_users - 1) for i in range(n_items - 1) if torch.rand(1, generator=g) < 0.5]
    edges += [(0, 0)] if (0, 0) not in edges else []
    ei = torch.tensor(sorted(set(edges))).t()
    feats = {"text": torch.randn(n_items, 7, generator=g), "image": torch.randn(n_items, 5, generator=g)}
    return ei, feats


def structure_of(model, parts):
    """The structural modules' ``(e_u^s, e_i^s)`` from the content module's per-modality output."""
    return model.structure({m: p.projected for m, p in parts.items()}, {m: p.id for m, p in parts.items()})


def dense_structure(model, parts, adj, gamma, user_gamma):
    """Eq. (7)-(10) with dense matrices: A [U, I], sym-normalized both ways."""
    du, di = adj.sum(1), adj.sum(0)
    inv = lambda d: torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))  # noqa: E731
    n_ui = inv(du)[:, None] * adj * inv(di)[None, :]
    item_reps, user_reps = [], []
    for m in model.modalities:
        items, users = parts[m][0], model.structure.user_id.weight
        i_sum, u_sum = items, users
        for _ in range(model.structure.num_layers):
            items, users = (n_ui.t() @ users + gamma * parts[m][1],
                            n_ui @ items + user_gamma * model.structure.user_id.weight)
            i_sum, u_sum = i_sum + items, u_sum + users
        item_reps.append(i_sum / (model.structure.num_layers + 1))
        user_reps.append(u_sum / (model.structure.num_layers + 1))

    def att(module, reps):
        s = torch.stack([torch.tanh(module.lin(r)) @ module.q for r in reps], 1)
        a = torch.softmax(s, 1)
        return sum(a[:, k:k + 1] * r for k, r in enumerate(reps))
    return att(model.structure.user_att, user_reps), att(model.structure.item_att, item_reps)


@pytest.mark.parametrize("gamma,user_term", [(0.3, True), (1.0, False)])
def test_structure_and_score_match_dense_reference(gamma, user_term):
    torch.manual_seed(0)
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=gamma, user_id_self_term=user_term).double()
    adj = torch.zeros(6, 5, dtype=torch.float64)
    adj[ei[0], ei[1]] = 1.0
    with torch.no_grad():
        out = model()
        ref_u, ref_i = dense_structure(model, out.content.modalities, adj, gamma, gamma if user_term else 0.0)
        e_u_s, e_i_s = structure_of(model, out.content.modalities)
        torch.testing.assert_close(e_u_s, ref_u)
        torch.testing.assert_close(e_i_s, ref_i)
        # Eq. (11): score = e_u^s . (e_i^c + e_i^s)
        u, i = model.embed()
        torch.testing.assert_close(u @ i.t(), ref_u @ (out.content.fused + ref_i).t())
        # Users 5 and item 4 have no edges: layer k >= 1 holds only the γ·ID term.
        assert torch.isfinite(u).all() and torch.isfinite(i).all()


def test_content_module_follows_eq1_eq2():
    torch.manual_seed(1)
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4).double()
    with torch.no_grad():
        e_c, parts, alphas = model.content()
        for m in model.modalities:
            e_m = feats[m].double() @ model.content.proj[m].weight.t() + model.content.proj[m].bias
            torch.testing.assert_close(parts[m][0], e_m)
            a = alphas[m]
            torch.testing.assert_close(parts[m][2], a[:, :1] * e_m + a[:, 1:] * model.content.item_id[m].weight)
        f = alphas["fuse"]
        torch.testing.assert_close(e_c, f[:, :1] * parts["text"][2] + f[:, 1:] * parts["image"][2])


@pytest.mark.parametrize("options", [
    {},
    {"item_head": "layernorm_mlp"},
    {"contrast_scope": "batch"},
    {"contrast_scope": "sample", "contrast_sample_size": 3},
    {"contrast_pairs": "one_direction", "reg_scope": "batch"},
    {"normalization": "row_self_loop"},
    {"trainable_features": True},
])
def test_every_parameter_gets_a_gradient(options):
    torch.manual_seed(2)
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, **options)
    loss, parts = model.loss(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1]))
    assert torch.isfinite(loss) and {"bpr", "contrast", "reg"} <= set(parts)
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.raw_feature("text").requires_grad == options.get("trainable_features", False)
    # Fixed features stay out of the state dict (checkpoints hold what training changes only).
    assert any("text" in k and k.startswith("content.raw_params") for k in model.state_dict()) \
        == options.get("trainable_features", False)


def test_ablations():
    torch.manual_seed(3)
    ei, feats = tiny_graph()
    with torch.no_grad():
        m = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, content_no_id=True)
        _, parts, _ = m.content()
        assert all(torch.equal(parts[k][0], parts[k][2]) for k in m.modalities)
        m = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, structure_no_id=True)
        assert m.structure.conv_to_item.gamma == 0.0 and m.structure.conv_to_user.gamma == 0.0
        m = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, no_content=True)
        out = m()
        torch.testing.assert_close(out.item, structure_of(m, out.content.modalities)[1])
    _, logs = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, no_contrast=True).loss(
        torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))
    assert "contrast" not in logs


def test_any_number_of_modalities_from_the_graph():
    data = make_synthetic(num_users=40, num_items=50, min_per_user=5, max_per_user=10)
    assert IDSF.from_graph(data).modalities == ["view_a", "view_b"]
    one = IDSF.from_graph(data, modalities=["view_b"], embedding_dim=8)
    assert one.modalities == ["view_b"]
    data["item"].x_view_c = torch.randn(50, 3)
    three = IDSF.from_graph(data, embedding_dim=8)
    assert three.modalities == ["view_a", "view_b", "view_c"]
    loss, _ = three.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    with pytest.raises(ValueError, match="not in the graph"):
        IDSF.from_graph(data, modalities=["text"])
    with pytest.raises(ValueError, match="contrast_scope"):
        IDSF.from_graph(data, contrast_scope="everything")


def test_bpr_mf_scores_and_gradients():
    data = make_synthetic(num_users=30, num_items=40, min_per_user=5, max_per_user=8)
    model = BPRMF.from_graph(data, embedding_dim=8)
    assert model.score(torch.tensor([0, 1, 2])).shape == (3, 40)
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    assert model.user_emb.weight.grad.abs().sum() > 0 and model.item_emb.weight.grad.abs().sum() > 0
    assert model.train_edge_index.shape == data[EDGE].edge_index.shape


# ------------------------------------------------------------------ the layer in PyG's heterogeneous machinery
def hetero_structure(model, parts, data, normalize, edge_weight=None):
    """Eq. (7)-(10) through torch_geometric.nn.HeteroConv over the project's HeteroData, both relations."""
    from torch_geometric.nn import HeteroConv

    from idsf_pyg.data import REV_EDGE
    from idsf_pyg.nn import IDSFConv
    gamma = model.structure.conv_to_item.gamma
    conv = HeteroConv({EDGE: IDSFConv(gamma, normalize=normalize),
                       REV_EDGE: IDSFConv(model.structure.conv_to_user.gamma, normalize=normalize)}, aggr="sum")
    edge_index_dict = {EDGE: data[EDGE].edge_index, REV_EDGE: data[REV_EDGE].edge_index}
    extra = {} if edge_weight is None else {"edge_weight_dict": {EDGE: edge_weight, REV_EDGE: edge_weight}}
    item_reps, user_reps = [], []
    for m in model.modalities:
        x = {"user": model.structure.user_id.weight, "item": parts[m][0]}
        ids = {"user": model.structure.user_id.weight, "item": parts[m][1]}
        total = dict(x)
        for _ in range(model.structure.num_layers):
            x = conv(x, edge_index_dict, x_id_dict=ids, **extra)
            total = {k: total[k] + x[k] for k in total}
        item_reps.append(total["item"] / (model.structure.num_layers + 1))
        user_reps.append(total["user"] / (model.structure.num_layers + 1))
    return model.structure.user_att(user_reps)[0], model.structure.item_att(item_reps)[0]


@pytest.mark.parametrize("normalization", ["sym", "row_self_loop"])
@pytest.mark.parametrize("weighted", [False, True])
def test_heteroconv_over_the_graph_equals_the_models_propagation(normalization, weighted):
    torch.manual_seed(3)
    data = make_synthetic(num_users=30, num_items=40, min_per_user=3, max_per_user=8, feature_dims=(6, 5), seed=2)
    if weighted:
        data[EDGE].edge_weight = torch.rand(data[EDGE].edge_index.size(1)) * 4 + 0.5
    model = IDSF.from_graph(data, embedding_dim=8, gamma=0.4, normalization=normalization, use_edge_weight=weighted)
    with torch.no_grad():
        parts = model.content()[1]
        got = structure_of(model, parts)
        ref = hetero_structure(model, parts, data, normalization, data[EDGE].edge_weight if weighted else None)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_edge_weights_follow_the_weighted_dense_reference_and_are_off_by_default():
    torch.manual_seed(0)
    ei, feats = tiny_graph()
    w = torch.rand(ei.size(1), dtype=torch.float64) * 3 + 0.2
    torch.manual_seed(0)
    plain = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3).double()
    torch.manual_seed(0)
    ignored = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3, train_edge_weight=w).double()  # not asked for
    torch.manual_seed(0)
    weighted = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3, use_edge_weight=True, train_edge_weight=w).double()
    adj = torch.zeros(6, 5, dtype=torch.float64)
    adj[ei[0], ei[1]] = w
    with torch.no_grad():
        torch.testing.assert_close(ignored.embed()[1], plain.embed()[1])
        parts = weighted.content()[1]
        ref_u, ref_i = dense_structure(weighted, parts, adj, 0.3, 0.3)  # weighted degrees: row/column sums
        e_u_s, e_i_s = structure_of(weighted, parts)
        torch.testing.assert_close(e_u_s, ref_u)
        torch.testing.assert_close(e_i_s, ref_i)
        assert not torch.allclose(e_i_s, structure_of(plain, parts)[1])
    with pytest.raises(ValueError, match="needs the training edges' weights"):
        IDSF.from_options(6, 5, ei, feats, use_edge_weight=True)


def test_buffers_move_with_the_model_without_stale_caches():
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4)
    u32, _ = model.embed()
    model = model.double()
    assert model.structure.adj_to_item.dtype == torch.float64 and model.structure.adj_to_user.dtype == torch.float64
    u64, _ = model.embed()
    assert u64.dtype == torch.float64
    torch.testing.assert_close(u64.float(), u32, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ the official code's options
def official_structure(model, parts, adj, gamma):
    """models.py of the official code, densely: ego = normalize([p^m; e^m]); K times
    ego = D^-1 (A + I) ego + gamma [user ID; item ID^m]; the layer mean; attention over modalities."""
    n_u, n_i = adj.shape
    a = torch.zeros(n_u + n_i, n_u + n_i, dtype=torch.float64)
    a[:n_u, n_u:], a[n_u:, :n_u] = adj, adj.t()
    a = a + torch.eye(n_u + n_i, dtype=torch.float64)
    norm = a / a.sum(1, keepdim=True)
    user_reps, item_reps = [], []
    for m in model.modalities:
        ego = torch.nn.functional.normalize(torch.cat([model.structure.user_pref[m].weight, parts[m][0]]), dim=1)
        ids = torch.cat([model.structure.user_id.weight, parts[m][1]])
        layers = [ego]
        for _ in range(model.structure.num_layers):
            ego = norm @ ego + gamma * ids
            layers.append(ego)
        mean = torch.stack(layers).mean(0)
        user_reps.append(mean[:n_u])
        item_reps.append(mean[n_u:])
    return model.structure.user_att(user_reps)[0], model.structure.item_att(item_reps)[0]


def test_official_structure_option_matches_the_official_forward():
    torch.manual_seed(4)
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, gamma=0.3, normalization="row_self_loop",
                 structure_init="preference").double()
    adj = torch.zeros(6, 5, dtype=torch.float64)
    adj[ei[0], ei[1]] = 1.0
    with torch.no_grad():
        parts = model.content()[1]
        for got, ref in zip(structure_of(model, parts), official_structure(model, parts, adj, 0.3)):
            torch.testing.assert_close(got, ref)


def test_official_init_and_layernorm_options():
    ei, feats = tiny_graph()
    torch.manual_seed(0)
    paper = IDSF.from_options(6, 5, ei, feats, embedding_dim=8, item_head="layernorm_mlp")
    torch.manual_seed(0)
    official = IDSF.from_options(6, 5, ei, feats, embedding_dim=8, item_head="layernorm_mlp", linear_init="torch",
                    layernorm_eps=1e-6)
    # Xavier zeroes the biases; PyTorch's default draws them from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert paper.content.proj["text"].bias.abs().sum() == 0 and official.content.proj["text"].bias.abs().sum() > 0
    bound = 1 / 7 ** 0.5  # text features are 7-d
    assert official.content.proj["text"].weight.abs().max() <= bound and official.content.proj["text"].bias.abs().max() <= bound
    assert official.head_c[2].eps == 1e-6 and paper.head_c[2].eps == 1e-5
    # Embeddings are Xavier in both.
    limit = (6 / (6 + 8)) ** 0.5
    assert official.structure.user_id.weight.abs().max() <= limit and paper.structure.user_id.weight.abs().max() <= limit


def test_blockwise_and_dense_kernels_give_the_same_loss_and_gradients():
    """The model's all-item contrastive loss through the blockwise kernel (blocks of 2 rows, so several
    blocks, recomputed in the backward pass) against the dense reference."""
    ei, feats = tiny_graph()
    grads = {}
    for kernel, block in (("dense", 0), ("blockwise", 2), ("blockwise", 0)):
        torch.manual_seed(0)
        model = IDSF.from_options(6, 5, ei, feats, embedding_dim=4, contrast_kernel=kernel, contrast_block_size=block).double()
        loss, logs = model.loss(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 4]))
        loss.backward()
        grads[(kernel, block)] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    ref_loss, ref_grads = grads[("dense", 0)]
    for key in (("blockwise", 2), ("blockwise", 0)):
        value, g = grads[key]
        torch.testing.assert_close(value, ref_loss, rtol=1e-12, atol=1e-12)
        for name in ref_grads:
            torch.testing.assert_close(g[name], ref_grads[name], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="contrast_kernel must be one of"):
        IDSF.from_options(6, 5, ei, feats, contrast_kernel="flash")
    with pytest.raises(ValueError, match="contrast_block_size"):
        IDSF.from_options(6, 5, ei, feats, contrast_block_size=-1)

@pytest.mark.parametrize("modalities,pairs", [(["text"], "paper"), (["text", "image"], "paper"),
                                              (["text", "image"], "one_direction")])
def test_contrast_gemm_flops_counts_what_the_kernel_runs(modalities, pairs):
    """contrast_gemm_flops' "executed" against PyTorch's FLOP counter over the contrastive loss's forward
    and backward passes (blocks of 2 rows: the recomputing path), for 1 and 2 modalities."""
    from torch.utils.flop_counter import FlopCounterMode
    ei, feats = tiny_graph()
    model = IDSF.from_options(6, 5, ei, {m: feats[m] for m in modalities}, embedding_dim=4, contrast_pairs=pairs,
                 contrast_block_size=2)
    out = model.forward()
    leaf = lambda t: t.detach().requires_grad_()  # noqa: E731 - the backward stops at the loss's inputs
    parts = {m: ModalityContent(*(leaf(t) for t in p)) for m, p in out.content.modalities.items()}
    with FlopCounterMode(display=False) as counter:
        model.contrast(Content(leaf(out.content.fused), parts, {})).backward()
    counted = model.contrast_gemm_flops(5)
    assert counter.get_total_flops() == counted["executed"]
    assert counted["floor"] < counted["executed"]
