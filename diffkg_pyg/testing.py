r"""Reference implementations of the method, transcribed literally from the
specification (and the authors' code), that the package's fast forms are
checked against in the tests and timed against in the benchmarks."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter, softmax

from diffkg_pyg.nn.conv.kg_attention import KGAttentionConv
from diffkg_pyg.nn.denoiser import SparseDenoiser, timestep_embedding
from diffkg_pyg.nn.diffusion import GaussianDiffusion

__all__ = ['dense_hidden', 'dense_denoiser', 'dense_reverse',
           'DenseDenoiser', 'literal_hop',
           'PerEdgeAttention', 'literal_contrast_loss',
           'reference_recommendation_loss']


def dense_hidden(model: SparseDenoiser, x: Tensor, t: Tensor,
                 mask: Optional[Tensor] = None) -> Tensor:
    r"""The hidden layer of the method's dense denoiser on rows :obj:`x`
    :obj:`[B, N]`: :math:`\tanh(\mathbf{W}_1 [\mathrm{dropout}(\mathbf{x}
    / \Vert\mathbf{x}\Vert) \Vert \mathrm{Linear}(\mathrm{emb}(t))] +
    \mathbf{b}_1)`, assembled from the weights of a
    :class:`SparseDenoiser`; dropout by the keep :obj:`mask` :obj:`[B, N]`
    when given (none otherwise)."""
    w1 = torch.cat([model.input_emb.weight.t(), model.input_time.weight],
                   dim=1)  # [H, N + d_t]
    b1 = model.input_time.bias
    time = model.time_layer(timestep_embedding(t, model.time_channels))
    x = F.normalize(x, dim=-1) if model.norm else x
    if mask is not None:
        x = x * mask / (1.0 - model.dropout)
    return torch.tanh(torch.cat([x, time], dim=-1) @ w1.t() + b1)


def dense_denoiser(model: SparseDenoiser, x: Tensor, t: Tensor,
                   mask: Optional[Tensor] = None) -> Tensor:
    r"""The method's dense denoiser on rows :obj:`x` :obj:`[B, N]`,
    Linear(N + d_t, H), tanh, Linear(H, N) on the L2-normalised row (see
    :func:`dense_hidden`), assembled from the weights of a
    :class:`SparseDenoiser`."""
    w2, b2 = model.output_emb.weight, model.output_bias.weight.view(-1)
    return dense_hidden(model, x, t, mask) @ w2.t() + b2


def dense_reverse(model: SparseDenoiser, diffusion: GaussianDiffusion,
                  x: Tensor) -> Tensor:
    r"""The method's deterministic reverse process on dense rows :obj:`x`
    :obj:`[B, N]`: :math:`\mathbf{x} \leftarrow c_{1,i}
    \mathrm{denoiser}(\mathbf{x}, i) + c_{2,i} \mathbf{x}` for :math:`i
    = T - 1, \dots, 0` (no dropout)."""
    for i in reversed(range(diffusion.steps)):
        t = torch.full((x.size(0), ), i, dtype=torch.long)
        x = (diffusion.posterior_mean_coef1[i] * dense_denoiser(model, x, t) +
             diffusion.posterior_mean_coef2[i] * x).float()
    return x


class DenseDenoiser(torch.nn.Module):
    r"""The method's denoiser as the authors write it, with its own dense
    weights: rows of length N, Linear(N + d_t, H), tanh, Linear(H, N),
    input dropout 0.5 in training."""
    def __init__(self, num_entities: int, hidden_channels: int = 1000,
                 time_channels: int = 10) -> None:
        super().__init__()
        self.time_channels = time_channels
        self.time_layer = torch.nn.Linear(time_channels, time_channels)
        self.in_layer = torch.nn.Linear(num_entities + time_channels,
                                        hidden_channels)
        self.out_layer = torch.nn.Linear(hidden_channels, num_entities)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        time = self.time_layer(timestep_embedding(t, self.time_channels))
        x = F.dropout(F.normalize(x, dim=-1), 0.5, self.training)
        hidden = torch.tanh(self.in_layer(torch.cat([x, time], dim=-1)))
        return self.out_layer(hidden)


def literal_hop(x: Tensor, edge_index: Tensor, edge_type: Tensor,
                relation_emb: Tensor, weight: Tensor) -> Tensor:
    r"""One relation-aware attention hop as the specification writes it:
    concatenate head and tail, multiply by W, score with the relation,
    softmax per head with a Python loop, add the weighted tails to the
    head."""
    head, tail = edge_index
    score = (torch.cat([x[head], x[tail]], dim=-1) @ weight)
    score = F.leaky_relu((score * relation_emb[edge_type]).sum(-1), 0.2)
    out = x.clone()
    for h in range(x.size(0)):
        mask = head == h
        if mask.any():
            alpha = torch.softmax(score[mask], dim=0)
            out[h] = out[h] + (alpha[:, None] * x[tail[mask]]).sum(0)
    return out


class PerEdgeAttention(KGAttentionConv):
    r"""The attention hop in its direct vectorised form (per-edge
    concatenation of head and tail, multiplied by W): the form the authors'
    code computes, against which the package's per-node score tables are
    timed."""
    # PyG generates `propagate` per class from the signature of `message`;
    # without this line the subclass would inherit the parent's once that
    # was generated.
    propagate = MessagePassing.propagate

    def forward(self, x, edge_index, edge_type, relation_emb):
        out = self.propagate(edge_index, x=x, relation=relation_emb[
            edge_type], size=(x.size(0), x.size(0)))
        return x + out

    def message(self, x_i, x_j, relation, index, ptr, size_i):
        score = ((torch.cat([x_i, x_j], dim=-1) @ self.weight) *
                 relation).sum(dim=-1)
        alpha = softmax(F.leaky_relu(score, self.negative_slope), index, ptr,
                        size_i)
        return alpha.unsqueeze(-1) * x_j


def literal_contrast_loss(embeds1: Tensor, embeds2: Tensor, nodes: Tensor,
                          temp: float) -> Tensor:
    r"""The authors' :obj:`contrastLoss` (their :obj:`Utils.py`), line by
    line."""
    embeds1 = F.normalize(embeds1 + 1e-8, p=2)
    embeds2 = F.normalize(embeds2 + 1e-8, p=2)
    pck_embeds1 = embeds1[nodes]
    pck_embeds2 = embeds2[nodes]
    nume = torch.exp(torch.sum(pck_embeds1 * pck_embeds2, dim=-1) / temp)
    deno = torch.exp(pck_embeds1 @ embeds2.T / temp).sum(-1) + 1e-8
    return -torch.log(nume / deno).mean()


# DiffKG's recommendation step as the package computed it at commit 7834f82
# (before the step's speed work), every building block copied here so that
# later changes to the package's cannot change it: the faster step is checked
# against it in the tests and timed beside it by benchmarks/speed_step.py.
class _ReferenceSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, ctx.adj @ grad


def _reference_hop(conv, x: Tensor, edge_index: Tensor, edge_type: Tensor,
                   relation_emb: Tensor) -> Tensor:
    top = x @ conv.weight[:conv.channels]
    bottom = x @ conv.weight[conv.channels:]
    head, tail = edge_index
    num_relations = relation_emb.size(0)
    if x.size(0) * num_relations <= edge_index.size(1) * conv.channels:
        top_score = (top @ relation_emb.t()).view(-1)
        bottom_score = (bottom @ relation_emb.t()).view(-1)
        score = (top_score[head * num_relations + edge_type] +
                 bottom_score[tail * num_relations + edge_type])
    else:
        score = ((top[head] + bottom[tail]) *
                 relation_emb[edge_type]).sum(dim=-1)
    score = F.leaky_relu(score, conv.negative_slope)
    alpha = softmax(score, head, None, x.size(0))
    return x + scatter(alpha.unsqueeze(-1) * x[tail], head, 0, x.size(0),
                       reduce='sum')


def _reference_lse(anchor: Tensor, positive: Tensor) -> Tensor:
    return torch.logsumexp(anchor @ positive.t(), dim=-1)


def _reference_info_nce(anchor: Tensor, positive: Tensor, index: Tensor,
                        temperature: float, chunk_size: int = 4096
                        ) -> Tensor:
    anchor = F.normalize(anchor[index] + 1e-8, dim=-1) / temperature
    positive = F.normalize(positive + 1e-8, dim=-1)
    lse = [checkpoint(_reference_lse, anchor, part, use_reentrant=False)
           for part in torch.split(positive, chunk_size)]
    lse = torch.logsumexp(torch.stack(lse, dim=-1), dim=-1)
    return (lse - (anchor * positive[index]).sum(dim=-1)).mean()


def reference_recommendation_loss(model, adj: Tensor, main_kg, second_kg,
                                  user: Tensor, pos_item: Tensor,
                                  neg_item: Tensor,
                                  batch_size: Optional[float] = None
                                  ) -> Tuple[Tensor, Dict[str, Tensor]]:
    r"""DiffKG's recommendation objective, :meth:`DiffKG.loss
    <diffkg_pyg.nn.DiffKG.loss>` (same arguments, with the model first), as
    the package computed it at commit ``7834f82``, before the work on the
    step's speed: both KG views through the attention encoder, the two
    views propagated together over the user-item graph, BPR, the L2 term and
    the chunked, recomputed InfoNCE. The faster step must give the same loss
    and gradients."""
    encoder = model.kg_encoder
    views = []
    for kg_edge_index, kg_edge_type in ([main_kg, second_kg]
                                        if model.ssl_weight > 0
                                        else [main_kg]):
        out = x = model.entity_emb
        for _ in range(encoder.num_hops):
            x = _reference_hop(encoder.conv, x, kg_edge_index, kg_edge_type,
                               model.relation_emb)
            x = F.dropout(x, encoder.dropout, encoder.training)
            x = F.normalize(x, dim=-1)
            out = encoder.res_lambda * out + x
        views.append(torch.cat([model.user_emb, out[:model.num_items]]))
    x = out = torch.cat(views, dim=-1)
    for _ in range(model.num_layers):
        x = _ReferenceSpMM.apply(adj, x)
        out = out + x
    (user_emb, item_emb), *second = [
        (view[:model.num_users], view[model.num_users:])
        for view in out.split(model.embedding_dim, dim=-1)]
    pos = (user_emb[user] * item_emb[pos_item]).sum(dim=-1)
    neg = (user_emb[user] * item_emb[neg_item]).sum(dim=-1)
    bpr = -F.logsigmoid(pos - neg).sum() / (batch_size or user.numel())
    reg = model.l2_weight * sum(w.square().sum()
                                for w in model.recommender_parameters())
    loss = bpr + reg
    ssl = torch.zeros((), device=user.device)
    if model.ssl_weight > 0:
        (user_emb2, item_emb2), = second
        tau = model.temperature
        ssl = (_reference_info_nce(user_emb2, user_emb, user, tau) +
               _reference_info_nce(item_emb2, item_emb, pos_item, tau))
        loss = loss + model.ssl_weight * ssl
    return loss, {'bpr': bpr.detach(), 'reg': reg.detach(),
                  'ssl': ssl.detach()}
