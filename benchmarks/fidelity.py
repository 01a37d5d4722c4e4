r"""How faithful is the sparse denoiser objective to the dense one? At fixed
(trained) parameters and for every diffusion step t, on a fixed set of KG
heads, over many draws, with **paired** draws: every draw takes one noise
array and one dropout mask on all N entries of the heads' rows and one
support, and computes on them

* ``dense``: the dense method's diffusion loss (rows of length N;
  computed here from the denoiser's weights, not with the package's code)
  and its gradient;
* ``sparse``: the package's ``denoiser_loss`` on the support with the same
  noise and mask (so the hidden states are the dense ones, and what
  differs is the support's Horvitz-Thompson estimate of the row sums);
* with ``--estimate-columns K`` (or, by default, when N is above the
  package's ``noise_columns``), ``estimate``: the package's sampled noise
  (K drawn columns outside the support), on the same support and step but
  its own noise (the estimator cannot take a given N-wide draw), against
  ``sparse``, the exact path.

Per step it prints one JSON line: the paired gap of each comparison (the
mean of the per-draw differences, relative to the reference's mean, with a
95 % interval from their standard error), and per parameter tensor the
cosine of the two expected gradients and the relative error
:math:`\Vert E[\nabla_a - \nabla_b] \Vert / \Vert E[\nabla_b] \Vert`,
each **debiased** (the draws fall into ``--groups`` groups; a product of
two different groups' means is an unbiased estimate of a product of
expectations, so the Monte-Carlo noise of the means does not shrink the
cosine) with a jackknife standard error over the groups; for the entity
tables also the debiased share of the dense expected gradient's squared
norm off the measured heads' edge rows. The CKGC term, dense and sparse,
rides along. A summary line per comparison says, for each target (gap
within 2 %, gradient cosine at least 0.99), whether the 95 % intervals
show it met (every step's interval inside the target), not met (some
step's interval wholly outside it) or neither ("not shown": more draws
needed).

    python benchmarks/fidelity.py --data ../shared/data/lastfm-hetrec2011 \
        --parameters /tmp/hetrec-denoiser.pt --threads 1 \
        --output benchmarks/results/fidelity-paired/lastfm-hetrec2011.jsonl
    python benchmarks/fidelity.py --data ../shared/data/alibaba-ifashion \
        --no-dense --groups 4 --draws 40 --diffusion-only \
        --parameters /tmp/ali.pt
    python benchmarks/fidelity.py --table \
        benchmarks/results/fidelity-paired/lastfm-hetrec2011.jsonl
"""
import argparse
import itertools
import json
import os
import time

import torch
import torch.nn.functional as F
from common import emit

from diffkg_pyg.csr import gather_rows, to_csr
from diffkg_pyg.data import KG, USER_ITEM, load_dataset
from diffkg_pyg.nn.denoiser import timestep_embedding
from diffkg_pyg.nn.kg_diffusion import denoiser_loss, sample_support
from diffkg_pyg.train import Trainer, get_recipe
from diffkg_pyg.version import package_commit

TARGET_GAP, TARGET_COSINE = 0.02, 0.99
# The records' keys: the package's exact path is the "sparse" method.
LABELS = {'sparse_vs_dense': 'sparse vs dense',
          'estimate_vs_sparse': 'estimate vs exact'}
ENTITY_TABLES = ('input_emb.weight', 'output_emb.weight',
                 'output_bias.weight')


def dense_terms(denoiser, diffusion, rows, t, item_user, head_emb, keep,
                noise, mask):
    r"""The dense method's diffusion and CKGC terms on dense rows
    :obj:`rows` :obj:`[B, N]`, for the given noise and keep mask."""
    acp = diffusion.alphas_cumprod[t].float()[:, None]
    x_t = acp.sqrt() * rows + (1 - acp).sqrt() * noise
    x = F.normalize(x_t, dim=-1) if denoiser.norm else x_t
    if keep < 1.0:
        x = x * mask / keep
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


def gram(a, b, rows=None):
    r"""The dot products :math:`a_i \cdot b_j` of every pair of groups'
    means (lists of tensors; :obj:`rows`: only those rows), :obj:`[G, G]`
    float64, each computed once."""
    def pick(x):
        return (x if rows is None else x[rows]).double()
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    for i, j in itertools.product(range(len(a)), range(len(b))):
        out[i, j] = float((pick(a[i]) * pick(b[j])).sum())
    return out


def cross(products, keep):
    r""":math:`\mathrm{mean}_{i \neq j} a_i \cdot b_j` over the groups
    :obj:`keep`, from their :func:`gram` :obj:`products`: an unbiased
    estimate of :math:`E[a] \cdot E[b]` when the groups are
    independent."""
    sub = products[keep][:, keep]
    k = len(keep)
    return float(sub.sum() - sub.diagonal().sum()) / (k * (k - 1))


def debiased(stat, groups):
    r"""A statistic of the groups :obj:`stat(keep)` (:obj:`keep`: the
    groups it uses) over all :obj:`groups`, and its jackknife standard
    error over them (leave one out)."""
    value = stat(list(range(groups)))
    if groups < 3:
        return value, float('nan')
    leave = [stat([k for k in range(groups) if k != i])
             for i in range(groups)]
    mean = sum(leave) / groups
    se = ((groups - 1) / groups * sum((v - mean)**2 for v in leave))**0.5
    return value, se


def compare(means, a, b, name):
    r"""Debiased cosine and relative error of the expected gradients of
    kinds :obj:`a` against :obj:`b` for tensor :obj:`name`."""
    x = [m[name] for m in means[a]]
    y = [m[name] for m in means[b]]
    xx, yy, xy = gram(x, x), gram(y, y), gram(x, y)
    # (x_i - y_i) . (x_j - y_j), from the same products:
    dd = xx - xy - xy.t() + yy

    def cosine(keep):
        denominator = cross(xx, keep) * cross(yy, keep)
        return (cross(xy, keep) / denominator**0.5 if denominator > 0
                else float('nan'))

    def relative_error(keep):
        reference = cross(yy, keep)
        return (max(cross(dd, keep), 0.0) / reference)**0.5 \
            if reference > 0 else float('nan')
    groups = len(x)
    return debiased(cosine, groups), debiased(relative_error, groups)


def gap(values, reference):
    r"""The paired gap: mean of the per-draw differences relative to the
    reference's mean, with its 95 % interval."""
    diff = torch.tensor(values, dtype=torch.float64)
    base = float(torch.tensor(reference, dtype=torch.float64).mean())
    mean = float(diff.mean()) / abs(base)
    half = 1.96 * float(diff.std() / len(diff)**0.5) / abs(base)
    return {'rel_gap': mean, 'rel_gap_ci95': [mean - half, mean + half]}


def measure(model, data, heads, t_value, args):
    denoiser, diffusion = model.denoiser, model.diffusion
    denoiser.train()
    keep = 1.0 - denoiser.dropout
    n = model.num_entities
    ptr, col = to_csr(data[KG].edge_index, n)
    rows = torch.zeros(heads.numel(), n)
    row, tail = gather_rows(ptr, col, heads)
    rows[row, tail] = 1.0
    item_user = model.item_user_embedding(data[USER_ITEM].edge_index)
    head_emb = model.entity_emb[heads].detach()
    t = torch.full(heads.shape, t_value)
    generator = torch.Generator().manual_seed(args.seed + t_value)
    kinds = (['sparse'] if args.no_dense else ['dense', 'sparse'])
    columns = args.estimate_columns
    used = model.choose_noise_columns()
    if columns is None and used is not None and n > used:
        columns = used
    if columns is not None:
        kinds.append('estimate')
    losses = {kind: [] for kind in kinds}
    ckgc = {kind: [] for kind in kinds}
    sums = {kind: [None] * args.groups for kind in kinds}
    for draw in range(args.draws):
        noise = torch.randn(rows.shape, generator=generator)
        mask = (torch.rand(rows.shape, generator=generator) < keep).float()
        support = sample_support(ptr, col, heads, n, model.num_negatives,
                                 generator)
        terms = {}
        if 'dense' in kinds:
            terms['dense'] = dense_terms(denoiser, diffusion, rows, t,
                                         item_user, head_emb, keep, noise,
                                         mask)
        terms['sparse'] = denoiser_loss(denoiser, diffusion, support, t,
                                        item_user, head_emb, 0.5, noise,
                                        mask)[1:]
        if 'estimate' in kinds:
            terms['estimate'] = denoiser_loss(
                denoiser, diffusion, support, t, item_user, head_emb, 0.5,
                generator=generator, num_columns=columns)[1:]
        group = draw % args.groups
        for kind, (diff, ckgc_term) in terms.items():
            losses[kind].append(float(diff.detach()))
            ckgc[kind].append(float(ckgc_term.detach()))
            grad = gradients(denoiser, diff)
            total = sums[kind][group]
            sums[kind][group] = grad if total is None else {
                k: total[k] + g for k, g in grad.items()}
    counts = [len(range(k, args.draws, args.groups))
              for k in range(args.groups)]
    means = {kind: [{k: v / counts[i] for k, v in sums[kind][i].items()}
                    for i in range(args.groups)] for kind in kinds}
    out = {'t': t_value, 'draws': args.draws, 'groups': args.groups,
           'estimate_columns': columns}
    for kind in kinds:
        v = torch.tensor(losses[kind], dtype=torch.float64)
        out[f'{kind}_loss'] = float(v.mean())
        out[f'{kind}_ckgc'] = float(torch.tensor(ckgc[kind]).mean())
    pairs = ([('sparse', 'dense')] if 'dense' in kinds else []) + \
        ([('estimate', 'sparse')] if 'estimate' in kinds else [])
    names = list(means[kinds[0]][0])
    for a, b in pairs:
        key = f'{a}_vs_{b}'
        out[key] = gap([x - y for x, y in zip(losses[a], losses[b])],
                       losses[b])
        out[key]['grad'] = {}
        for name in names:
            (cos, cos_se), (err, err_se) = compare(means, a, b, name)
            out[key]['grad'][name] = {'cosine': cos, 'cosine_se': cos_se,
                                      'rel_error': err,
                                      'rel_error_se': err_se}
    if 'dense' in kinds:
        edges = torch.unique(tail)
        out['dense_share_off_edge_rows'] = {}
        every = list(range(args.groups))
        for name in ENTITY_TABLES:
            x = [m[name] for m in means['dense']]
            out['dense_share_off_edge_rows'][name] = 1 - cross(
                gram(x, x, edges), every) / cross(gram(x, x), every)
    return out


def _verdict(inside: bool, outside: bool) -> str:
    return 'met' if inside else 'not met' if outside else 'not shown'


def verdicts(records):
    r"""Per comparison, over the steps: the largest bound of the gaps'
    95 % intervals and the smallest lower bound (value - 1.96 SE) of the
    entity tables' gradient cosines, and each target's verdict (see
    :func:`_verdict`)."""
    lines = []
    for key in [k for k in records[0] if k.endswith(('_vs_dense',
                                                      '_vs_sparse'))]:
        gaps = [r[key]['rel_gap_ci95'] for r in records]
        worst_gap = max(max(abs(b) for b in ci) for ci in gaps)
        bounds = {name: [(r[key]['grad'][name]['cosine'] - 1.96 *
                          r[key]['grad'][name]['cosine_se'],
                          r[key]['grad'][name]['cosine'] + 1.96 *
                          r[key]['grad'][name]['cosine_se'])
                         for r in records]
                  for name in records[0][key]['grad']}
        lows = {name: min(low for low, _ in b) for name, b in bounds.items()}
        entity = [b for name in ENTITY_TABLES for b in bounds[name]]
        lines.append({
            'comparison': key, 'worst_gap_bound': worst_gap,
            'gap_target': _verdict(
                worst_gap <= TARGET_GAP,
                any(low > TARGET_GAP or high < -TARGET_GAP
                    for low, high in gaps)),
            'cosine_lower_bounds': lows,
            'cosine_target_entity_tables': _verdict(
                all(low >= TARGET_COSINE for low, _ in entity),
                any(high < TARGET_COSINE for _, high in entity))})
    return lines


def table(path):
    r"""The Markdown tables of a results file: per comparison and step,
    the paired gap with its 95 % interval and the debiased gradient
    cosines (± jackknife standard error) of the entity tables and the
    input layer's time weights; then the verdicts over the steps in the
    file."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if 'summary' not in r]
    names = ('input_emb.weight', 'output_emb.weight', 'input_time.weight')
    lines = ['| KG | comparison | t | draws | gap (95 % interval) | '
             'cosine input table | cosine output table | cosine input '
             'time weights | dense share off edge rows (input / output) |',
             '|---|---|---:|---:|---|---:|---:|---:|---|']
    for r in records:
        for key in [k for k in r if k.endswith(('_vs_dense',
                                                 '_vs_sparse'))]:
            c = r[key]
            low, high = c['rel_gap_ci95']
            cosines = ' | '.join(
                f"{c['grad'][n]['cosine']:.3f} ± "
                f"{c['grad'][n]['cosine_se']:.3f}" for n in names)
            share = r.get('dense_share_off_edge_rows')
            share = (f"{share['input_emb.weight']:.3f} / "
                     f"{share['output_emb.weight']:.3f}"
                     if share and key.endswith('_vs_dense') else '')
            lines.append(f"| {r['kg']} | {LABELS[key]} | "
                         f"{r['t']} | {r['draws']} | "
                         f"{100 * c['rel_gap']:+.2f} % ({100 * low:+.2f}, "
                         f"{100 * high:+.2f}) | {cosines} | {share} |")
    lines.append('')
    for v in verdicts(records):
        lows = ', '.join(f'{n} {v["cosine_lower_bounds"][n]:.3f}'
                         for n in ENTITY_TABLES[:2])
        lines.append(
            f"- {LABELS[v['comparison']]} (t = "
            f"{', '.join(str(r['t']) for r in records)}): the gap's 95 % "
            f"bound is {100 * v['worst_gap_bound']:.2f} % (target 2 %: "
            f"{v['gap_target']}); the cosines' lowest 95 % lower bounds: "
            f"{lows} (target 0.99: {v['cosine_target_entity_tables']})")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--table', default=None, metavar='FILE',
                        help='print the tables of a results file and exit')
    parser.add_argument('--data', help='a dataset folder or built-in name')
    parser.add_argument('--fraction', type=float, default=None,
                        help='keep this seeded fraction of the entities '
                        'and users (e.g. 0.224: 20k of Alibaba\'s 89k)')
    parser.add_argument('--draws', type=int, default=100)
    parser.add_argument('--groups', type=int, default=8,
                        help='groups of draws for the debiased statistics '
                        'and their jackknife')
    parser.add_argument('--heads', type=int, default=128,
                        help='KG heads measured (a seeded sample)')
    parser.add_argument('--steps', type=int, nargs='+', default=None,
                        help='diffusion steps t measured (default: all)')
    parser.add_argument('--estimate-columns', type=int, default=None,
                        help="compare the sampled noise with this many "
                        "columns against the exact path (default: the "
                        "model's noise_columns when N is larger)")
    parser.add_argument('--no-dense', action='store_true',
                        help='skip the dense method (large N)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=3,
                        help='training epochs before measuring')
    parser.add_argument('--diffusion-only', action='store_true',
                        help='train the denoiser only, for --epochs '
                        'diffusion phases (the recommender stays at its '
                        'initialisation; for the full KGs, where one '
                        'recommendation phase takes an hour)')
    parser.add_argument('--parameters', default=None,
                        help='the trained model: loaded when the file '
                        'exists, written after training otherwise')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--output', default=None,
                        help='append the JSON lines to this file')
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not args.data:
        parser.error('--data is required (or --table FILE)')
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
        if args.diffusion_only:
            for epoch in range(1, args.epochs + 1):
                trainer.recipe.train_diffusion(model, trainer.context, epoch)
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
    records, steps = [], args.steps or range(model.diffusion.steps)
    for t in steps:
        record = {'kg': name, 'num_entities': model.num_entities,
                  'heads': heads.numel(), 'commit': package_commit(),
                  'training': {'epochs': args.epochs,
                               'diffusion_only': args.diffusion_only,
                               'parameters': args.parameters},
                  **measure(model, data, heads, t, args)}
        record['seconds'] = time.perf_counter() - start
        records.append(record)
        lines = [record]
        if len(records) == len(steps):
            lines += [{'kg': name, 'summary': v} for v in verdicts(records)]
        emit(lines, args.output)


if __name__ == '__main__':
    main()
