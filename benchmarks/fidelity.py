r"""How faithful is the sparse denoiser objective to the dense one? At fixed
(trained) parameters and for every diffusion step t, on a fixed set of KG
heads, this measures over many draws (noise, dropout, supports):

* the dense method's expected diffusion loss (rows of length N, noise and
  dropout on all N entries; computed here from the denoiser's weights, not
  with the package's code) and the sparse one (the package's
  ``denoiser_loss``), their standard errors and relative gap;
* the cosine between the expected gradients of every denoiser parameter
  tensor, sparse against dense, and, as the Monte-Carlo floor of that
  figure, the cosine between two independent halves of the dense draws
  (and of the sparse draws: the sparse estimator's own floor), and the
  cosine corrected for the Monte-Carlo noise of both means (an estimate of
  the cosine of the expected gradients themselves);
  for the entity tables also the cosine on the rows of the heads' edges
  (which every sparse step updates) and the share of the dense expected
  gradient on the other rows (reached by the sparse step only through its
  sampled non-edges, whose weighted gradient is unbiased but has a large
  Monte-Carlo variance, or, for the input table, not at all);
* the CKGC term, dense and sparse.

One JSON object per line (``kg``, ``t``, ``version``, ``dense_loss``,
``sparse_loss``, ``sparse_stderr``, ``rel_gap``, ``grad_cosine``, ...).
``version`` is ``after`` for the package since the fidelity fix and
``before`` for earlier code (run the script with ``PYTHONPATH`` set to a
checkout of an earlier commit). ``--parameters FILE`` stores the trained
denoiser on the first run and reuses it, so that both versions are measured
at the same parameters.

    python benchmarks/fidelity.py --data ../shared/data/lastfm-hetrec2011 \
        --parameters /tmp/hetrec-denoiser.pt
    PYTHONPATH=/path/to/old/checkout python benchmarks/fidelity.py \
        --data ../shared/data/lastfm-hetrec2011 \
        --parameters /tmp/hetrec-denoiser.pt
"""
import argparse
import inspect
import json
import os
import time

import torch
import torch.nn.functional as F

from diffkg_pyg.data import KG, USER_ITEM, load_dataset
from diffkg_pyg.nn.denoiser import timestep_embedding
from diffkg_pyg.nn.kg_diffusion import denoiser_loss, sample_support
from diffkg_pyg.train import Trainer, get_recipe
from diffkg_pyg.utils import gather_rows, to_csr

VERSION = ('after' if 'num_columns' in
           inspect.signature(denoiser_loss).parameters else 'before')


def dense_terms(denoiser, diffusion, rows, t, item_user, head_emb, keep,
                generator):
    r"""The dense method's diffusion and CKGC terms on dense rows
    :obj:`rows` :obj:`[B, N]`, one draw of noise and dropout."""
    acp = diffusion.alphas_cumprod[t].float()[:, None]
    noise = torch.randn(rows.shape, generator=generator)
    x_t = acp.sqrt() * rows + (1 - acp).sqrt() * noise
    x = F.normalize(x_t, dim=-1) if denoiser.norm else x_t
    if keep < 1.0:
        x = x * (torch.rand(rows.shape, generator=generator) < keep) / keep
    time_in = denoiser.input_time(denoiser.time_layer(
        timestep_embedding(t, denoiser.time_channels)))
    hidden = torch.tanh(x @ denoiser.input_emb.weight + time_in)
    x_hat = (hidden @ denoiser.output_emb.weight.t() +
             denoiser.output_bias.weight.view(-1))
    weight = diffusion.loss_weight[t].float()
    diff = (weight * (rows - x_hat).square().mean(dim=-1)).mean()
    z = x_hat[:, :item_user.size(0)] @ item_user
    ckgc = (z - head_emb).square().mean(dim=-1).mean()
    return diff, ckgc


def sparse_terms(model, ptr, col, heads, t, item_user, head_emb, generator):
    support = sample_support(ptr, col, heads, model.num_entities,
                             model.num_negatives, generator)
    if VERSION == 'after':
        _, diff, ckgc = denoiser_loss(
            model.denoiser, model.diffusion, support, t, item_user,
            head_emb, 0.5, generator=generator,
            num_columns=model.noise_columns)
    else:  # The support-only noise of the earlier code.
        noise = torch.randn(support.index.shape, generator=generator)
        _, diff, ckgc = denoiser_loss(model.denoiser, model.diffusion,
                                      support, t, item_user, head_emb, 0.5,
                                      noise)
    return diff, ckgc


def gradients(denoiser, loss):
    names = [name for name, _ in denoiser.named_parameters()]
    grads = torch.autograd.grad(loss, list(denoiser.parameters()),
                                allow_unused=True)
    out = {}
    for name, grad, param in zip(names, grads, denoiser.parameters()):
        if grad is None:
            grad = torch.zeros_like(param)
        out[name] = grad.to_dense() if grad.is_sparse else grad
    return out


def cosine(a, b):
    return {name: float(F.cosine_similarity(a[name].flatten(),
                                            b[name].flatten(), dim=0))
            for name in a}


def corrected_cosine(dense, sparse):
    r"""The cosine of the two expected gradients with the Monte-Carlo
    noise taken out: the product of two independent halves' sums is an
    unbiased estimate of the squared norm of the expected gradient, so
    :math:`(S \cdot D) / \sqrt{(S_1 \cdot S_2)(D_1 \cdot D_2)}` estimates
    :math:`\cos(E S, E D)` without the attenuation by the noise of either
    mean (it may leave [-1, 1] by Monte-Carlo error; NaN when a half
    product is not positive)."""
    out = {}
    for n in dense[0]:
        d, s = dense[0][n] + dense[1][n], sparse[0][n] + sparse[1][n]
        norm = float((dense[0][n] * dense[1][n]).sum() *
                     (sparse[0][n] * sparse[1][n]).sum())
        out[n] = (float((d * s).sum()) / 4 / norm**0.5 if norm > 0 else
                  float('nan'))
    return out


def measure(model, data, heads, t_value, draws, seed):
    denoiser, diffusion = model.denoiser, model.diffusion
    denoiser.train()
    keep = 1.0 - denoiser.dropout
    kg = data[KG]
    ptr, col = to_csr(kg.edge_index, model.num_entities)
    rows = torch.zeros(heads.numel(), model.num_entities)
    row, tail = gather_rows(ptr, col, heads)
    rows[row, tail] = 1.0
    item_user = model.item_user_embedding(data[USER_ITEM].edge_index)
    head_emb = model.entity_emb[heads].detach()
    t = torch.full(heads.shape, t_value)
    generator = torch.Generator().manual_seed(seed)
    values = {'dense': [], 'sparse': [], 'dense_ckgc': [], 'sparse_ckgc': []}
    sums = {'dense': [None, None], 'sparse': [None, None]}
    for draw in range(draws):
        for name in ('dense', 'sparse'):
            if name == 'dense':
                diff, ckgc = dense_terms(denoiser, diffusion, rows, t,
                                         item_user, head_emb, keep,
                                         generator)
            else:
                diff, ckgc = sparse_terms(model, ptr, col, heads, t,
                                          item_user, head_emb, generator)
            values[name].append(float(diff.detach()))
            values[f'{name}_ckgc'].append(float(ckgc.detach()))
            grad = gradients(denoiser, diff)
            half = sums[name]
            k = draw % 2
            half[k] = grad if half[k] is None else {
                n: half[k][n] + g for n, g in grad.items()}
    mean = {name: {n: (sums[name][0][n] + sums[name][1][n]) / draws
                   for n in sums[name][0]} for name in sums}

    # Rows of the entity tables that every sparse step touches (the
    # measured heads' edges): the cosine there, and the share of the dense
    # expected gradient's squared norm on the other rows (those the sparse
    # step reaches only through sampled non-edges, or never).
    edges = torch.unique(tail)
    on_edges, share_off = {}, {}
    for n in ('input_emb.weight', 'output_emb.weight', 'output_bias.weight'):
        dense_grad, sparse_grad = mean['dense'][n], mean['sparse'][n]
        on_edges[n] = float(F.cosine_similarity(
            dense_grad[edges].flatten(), sparse_grad[edges].flatten(),
            dim=0))
        share_off[n] = float(1 - dense_grad[edges].square().sum() /
                             dense_grad.square().sum())

    def stats(v):
        v = torch.tensor(v, dtype=torch.float64)
        return float(v.mean()), float(v.std() / len(v)**0.5)
    dense_loss, dense_se = stats(values['dense'])
    sparse_loss, sparse_se = stats(values['sparse'])
    return {
        't': t_value, 'dense_loss': dense_loss, 'dense_stderr': dense_se,
        'sparse_loss': sparse_loss, 'sparse_stderr': sparse_se,
        'rel_gap': abs(sparse_loss - dense_loss) / abs(dense_loss),
        'grad_cosine': cosine(mean['dense'], mean['sparse']),
        'grad_cosine_dense_halves': cosine(sums['dense'][0],
                                           sums['dense'][1]),
        'grad_cosine_sparse_halves': cosine(sums['sparse'][0],
                                            sums['sparse'][1]),
        'grad_cosine_corrected': corrected_cosine(sums['dense'],
                                                  sums['sparse']),
        'grad_cosine_edge_rows': on_edges,
        'dense_grad_share_off_edge_rows': share_off,
        'dense_ckgc': stats(values['dense_ckgc'])[0],
        'sparse_ckgc': stats(values['sparse_ckgc'])[0],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', required=True,
                        help='a dataset folder or built-in name')
    parser.add_argument('--fraction', type=float, default=None,
                        help='keep this seeded fraction of the entities '
                        'and users (e.g. 0.224: 20k of Alibaba\'s 89k)')
    parser.add_argument('--draws', type=int, default=100)
    parser.add_argument('--heads', type=int, default=256,
                        help='KG heads measured (a seeded sample)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=3,
                        help='training epochs before measuring')
    parser.add_argument('--parameters', default=None,
                        help='the trained model: loaded when the file '
                        'exists, written after training otherwise')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_dataset(args.data, log=False)
    if args.fraction is not None:
        from common import subsample
        data = subsample(data, args.fraction)
    recipe = get_recipe('diffkg')(use_compile=False)
    trainer = Trainer(recipe, data, seed=args.seed, log=lambda line: None)
    model = trainer.model
    if args.parameters and os.path.exists(args.parameters):
        model.load_state_dict(torch.load(args.parameters,
                                         weights_only=True))
    else:
        trainer.fit(args.epochs, patience=args.epochs)
        if args.parameters:
            torch.save(model.state_dict(), args.parameters)
    degree = torch.bincount(data[KG].edge_index[0],
                            minlength=model.num_entities)
    candidates = torch.nonzero(degree > 0).view(-1)
    generator = torch.Generator().manual_seed(args.seed)
    heads = candidates[torch.randperm(candidates.numel(),
                                      generator=generator)[:args.heads]]
    heads = heads.sort().values
    name = os.path.basename(os.path.normpath(args.data))
    if args.fraction is not None:
        name += f'-{model.num_entities}'
    for t in range(model.diffusion.steps):
        record = {'kg': name, 'num_entities': model.num_entities,
                  'version': VERSION, 'draws': args.draws,
                  'heads': heads.numel(),
                  **measure(model, data, heads, t, args.draws,
                            args.seed + t)}
        record['seconds'] = time.perf_counter() - start
        print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
