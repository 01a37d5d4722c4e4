r"""Assertions shared by the tests of the literal transcriptions."""
import torch


def assert_same_gradients(ours, theirs, params, atol=1e-10):
    r"""The scalars :obj:`ours` and :obj:`theirs` agree, and so do their
    gradients with respect to every tensor of :obj:`params` (a parameter
    neither depends on has no gradient on both sides)."""
    assert torch.allclose(ours, theirs.reshape(ours.shape), atol=atol)
    grads = torch.autograd.grad(ours, params, allow_unused=True,
                                retain_graph=True)
    expected = torch.autograd.grad(theirs.sum(), params, allow_unused=True,
                                   retain_graph=True)
    for grad, expected_grad in zip(grads, expected):
        if expected_grad is None:
            assert grad is None or grad.abs().max() == 0
        else:
            assert grad is not None
            assert torch.allclose(grad, expected_grad, atol=atol)
