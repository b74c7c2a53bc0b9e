import torch

from idsf_pyg.nn import ModalityAttention


def test_attention_weights_follow_eq2():
    torch.manual_seed(0)
    att = ModalityAttention(4).double()
    e1, e2, e3 = (torch.randn(3, 4, dtype=torch.float64) for _ in range(3))
    fused, alpha = att([e1, e2, e3])
    w, b, q = att.lin.weight, att.lin.bias, att.q
    for n in range(3):
        s = torch.stack([q @ torch.tanh(w @ e[n] + b) for e in (e1, e2, e3)])
        a = torch.softmax(s, 0)
        torch.testing.assert_close(alpha[n], a)
        torch.testing.assert_close(fused[n], a[0] * e1[n] + a[1] * e2[n] + a[2] * e3[n])
    assert repr(att) == "ModalityAttention(4)"


def test_single_input_passes_through():
    att = ModalityAttention(3)
    x = torch.randn(5, 3)
    fused, alpha = att([x])
    assert torch.equal(fused, x) and torch.equal(alpha, torch.ones(5, 1))
