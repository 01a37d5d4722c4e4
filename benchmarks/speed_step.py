r"""One training step of a model, timed on a dataset graph: the median of
``--steps`` steps after ``--warmup`` steps, with the process's peak RSS.
For DiffKG a step is one recommendation step (phase 3: both KG views, the
user-item propagation, BPR and InfoNCE, backward and Adam), taken after one
rebuild by the untrained denoiser, so that both views have their sizes; for
the other models a step of their training pass.

``--compare`` (DiffKG) times, in the same process and alternating, the
package's step and the reference step kept in
:func:`diffkg_pyg.testing.reference_recommendation_loss` (the code of the
step before issue 29's work), and reports their ``ratio`` (reference /
package) and, after one step from the same parameters and batch,
``max_abs_diff``, the largest absolute difference over the gradients (one
float), ``loss_abs_diff`` for the loss, and by name ``max_abs_diff_by``
(every gradient and the loss) with ``max_abs_value_by``, the largest
absolute value of each. ``--profile`` prints the operators'
self CPU time over the measured steps (torch.profiler).

``--floor`` (DiffKG) times, at the data's shapes, only the kernels no
implementation of the step can skip: the :math:`2L` sparse products of
the user-item propagation (:math:`L` forward, :math:`L` backward, each on
both views' :math:`2d` columns), and for the users' and the items' InfoNCE
the score product :math:`[V, d] \times [d, B]`, its :math:`V \times B`
exponentials and the two gradient products. Their sum, ``floor_s``, is
what this machine's kernels need for that work alone; a step cannot be
faster unless a kernel is.

``--device cuda`` times the step on a GPU (each step to its last kernel)
and records the device's peak memory, ``peak_gpu_mb``.

``--table FILE`` prints BENCHMARKS.md's table of one commit's ``--compare
--floor`` records in a results file (the newest commit in it unless
``--commit`` names one) and exits.

    python benchmarks/speed_step.py --data ../shared/data/alibaba-ifashion \
        --model diffkg --steps 10 --threads 2 --compare \
        --output benchmarks/results/speed-step.jsonl
"""
import argparse
import functools
import json
import os
import statistics
import sys
import time

import torch
from common import emit, peak_rss_gb

from diffkg_pyg.data import load_dataset
from diffkg_pyg.process import peak_gpu_mb, retain_freed_memory
from diffkg_pyg.testing import reference_recommendation_loss
from diffkg_pyg.train import Trainer, get_recipe
from diffkg_pyg.version import package_commit


def build(args):
    data = load_dataset(args.data, log=False)
    recipe = get_recipe(args.model)()
    trainer = Trainer(recipe, data, seed=args.seed, log=lambda line: None,
                      max_batches=args.warmup + args.steps,
                      device=torch.device(args.device))
    if hasattr(recipe, 'train_recommendation'):
        trainer.model.rebuild(batch_size=trainer.context.batch_size,
                              generator=trainer.context.generator)
    return trainer


def timed_pass(trainer):
    r"""One capped pass of the model's steps; the seconds of every step
    (from the end of the previous one, batch sampling included)."""
    recipe, context, model = trainer.recipe, trainer.context, trainer.model
    times, step = [], context.accounting.step

    def timed_step(*a, **k):
        step(*a, **k)
        synchronize(context.device)  # A GPU's step ends when its kernels do.
        times.append(time.perf_counter())

    context.accounting.step = timed_step
    model.train()
    start = time.perf_counter()
    try:
        if hasattr(recipe, 'train_recommendation'):
            recipe.train_recommendation(model, context, 1)
        else:
            recipe.train_epoch(model, context, 1)
    finally:
        context.accounting.step = step
    return [b - a for a, b in zip([start] + times[:-1], times)]


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def step_difference(trainer):
    r"""One batch, the same parameters and dropout seed: the largest
    absolute difference between the package's and the reference step's
    loss, and between their gradients of every parameter."""
    model, context = trainer.model, trainer.context
    edge_index = trainer.recipe.train_edge_index
    user, pos, neg = next(iter(context.bpr_batches()))
    adj = model.adjacency(edge_index)
    kgs = model.views(*model._kg_views())
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    out = []
    for loss_fn in (model.loss, functools.partial(
            reference_recommendation_loss, model)):
        torch.manual_seed(0)
        loss, _ = loss_fn(adj, *kgs, user, pos, neg, context.batch_size)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append((loss.detach(), grads))
    (loss, grads), (ref_loss, ref_grads) = out
    diff = {'loss': float((loss - ref_loss).abs())}
    scale = {'loss': float(ref_loss.abs())}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, grad, ref in zip(names, grads, ref_grads):
        if ref is not None:
            diff[name] = float((grad - ref).abs().max())
            scale[name] = float(ref.abs().max())
    return diff, scale


def compare(trainer, args):
    r"""The package's and the reference step, in alternating passes."""
    model = trainer.model
    times = {'package': [], 'reference': []}
    for _ in range(args.rounds):
        for name in times:
            if name == 'reference':
                model.loss = functools.partial(
                    reference_recommendation_loss, model)
            try:
                times[name] += timed_pass(trainer)[args.warmup:]
            finally:
                model.__dict__.pop('loss', None)
    return times


def floor(trainer, args):
    r"""The median seconds of the step's unavoidable kernels."""
    model, recipe = trainer.model, trainer.recipe
    adj, d, batch = recipe.adj, model.embedding_dim, trainer.context.batch_size
    device = adj.device
    x = torch.randn(adj.size(0), 2 * d, device=device)
    anchor = torch.randn(batch, d, device=device)

    def infonce(num_nodes):
        positive = torch.randn(num_nodes, d, device=device)

        def kernels():
            weight = (positive @ anchor.t()).exp_()  # [V, B], kept.
            weight.t() @ positive  # The anchors' gradient.
            weight @ anchor  # The positives' gradient.
        return kernels

    # The product as the package calls it (no zero-filled buffer).
    parts = {'spmm_s': (lambda: torch.addmm(x, adj, x, beta=0),
                        2 * model.num_layers),
             'infonce_users_s': (infonce(model.num_users), 1),
             'infonce_items_s': (infonce(model.num_items), 1)}
    record = {}
    for name, (kernel, count) in parts.items():
        kernel()  # Warm-up.
        times = []
        for _ in range(args.steps):
            synchronize(device)
            start = time.perf_counter()
            kernel()
            synchronize(device)
            times.append(time.perf_counter() - start)
        record[name] = count * statistics.median(times)
    record['floor_s'] = sum(record.values())
    return {'implementation': 'floor', 'num_layers': model.num_layers,
            'batch_size': batch, **record}


def table(path, commit=None):
    r"""The Markdown table of the compare and floor records of one commit
    (the file's newest unless :obj:`commit` is given), one row per
    dataset."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    commit = commit or records[-1]['commit']
    chosen = [r for r in records if r['commit'].startswith(commit)]
    rows = {}
    for r in chosen:  # The last record of each kind.
        rows.setdefault(r['data'], {})[r['implementation']] = r
    lines = [f'Package code of `{commit[:7]}`, '
             f"{chosen[-1]['threads']} threads:", '',
             '| data | package step | reference step | speed-up | floor '
             '(sparse products + InfoNCE) | largest gradient difference '
             '(largest gradient) | peak RSS |',
             '|---|---:|---:|---:|---:|---|---:|']
    for data, r in rows.items():
        if not {'package', 'reference', 'package/reference',
                'floor'} <= set(r):
            continue
        pair = r['package/reference']  # (Dicts in records before 44.)
        diff = pair.get('max_abs_diff_by', pair['max_abs_diff'])
        scale = pair.get('max_abs_value_by', pair.get('max_abs_value'))
        name = max((k for k in diff if k != 'loss'), key=diff.get)
        floor = r['floor']
        lines.append(
            f"| {data} | {r['package']['step_s']:.3f} s | "
            f"{r['reference']['step_s']:.3f} s | "
            f"{r['package/reference']['ratio']:.2f}x | "
            f"{floor['floor_s']:.3f} s ({floor['spmm_s']:.3f} + "
            f"{floor['infonce_users_s'] + floor['infonce_items_s']:.3f}) | "
            f"{diff[name]:.1e} ({scale[name]:.3g}, {name}) | "
            f"{r['package']['peak_rss_gb']:.2f} GB |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data',
                        help='a dataset folder or built-in name')
    parser.add_argument('--model', default='diffkg')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cpu',
                        help='torch device of the step (on CUDA every step '
                        'is timed to its last kernel; peak_gpu_mb is '
                        'recorded)')
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--compare', action='store_true',
                        help="DiffKG: the package's step beside the "
                        'reference step')
    parser.add_argument('--floor', action='store_true',
                        help="DiffKG: the step's unavoidable kernels "
                        'alone (see above)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='--compare: alternating passes of each')
    parser.add_argument('--implementation', default='package',
                        choices=['package', 'reference'],
                        help='without --compare: which step to time (each '
                        "in its own process gives each its peak RSS; "
                        "--compare's two share one)")
    parser.add_argument('--output', default=None,
                        help='append the JSON lines to this file')
    parser.add_argument('--table', metavar='FILE', default=None,
                        help='print the table of a results file and exit')
    parser.add_argument('--commit', default=None,
                        help='--table: the records of this commit')
    args = parser.parse_args()
    if args.table:
        print(table(args.table, args.commit))
        return
    if args.data is None:
        parser.error('--data is required (or --table)')
    if args.model != 'diffkg' and (args.compare or args.floor or
                                   args.implementation != 'package'):
        parser.error('the reference step and the floor are DiffKG\'s: '
                     '--compare, --floor and --implementation reference '
                     'need --model diffkg')
    torch.set_num_threads(args.threads)
    retain_freed_memory(args.device)  # As the command line does.
    trainer = build(args)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        timed_pass(trainer)  # Warm-up outside the profile.
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            timed_pass(trainer)
        print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                        row_limit=30), file=sys.stderr)
    base = {'benchmark': 'step', 'data': os.path.basename(
        os.path.normpath(args.data)), 'model': args.model,
        'threads': args.threads, 'device': args.device,
        'commit': package_commit()}
    if args.compare:
        diff, scale = step_difference(trainer)
        times = compare(trainer, args)
    else:
        if args.implementation == 'reference':
            trainer.model.loss = functools.partial(
                reference_recommendation_loss, trainer.model)
        times = {args.implementation: timed_pass(trainer)[args.warmup:]}
    records = [{**base, 'implementation': name, 'steps': len(t),
                'step_s': statistics.median(t), 'peak_rss_gb': peak_rss_gb(),
                **peak_gpu_mb(args.device)}
               for name, t in times.items()]
    if args.compare:
        records.append({**base, 'implementation': 'package/reference',
                        'ratio': records[1]['step_s'] / records[0]['step_s'],
                        'max_abs_diff': max(v for k, v in diff.items()
                                            if k != 'loss'),
                        'loss_abs_diff': diff['loss'],
                        'max_abs_diff_by': diff, 'max_abs_value_by': scale})
    if args.floor:
        records.append({**base, **floor(trainer, args)})
    emit(records, args.output)


if __name__ == '__main__':
    main()
