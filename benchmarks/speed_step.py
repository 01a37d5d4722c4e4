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

``--phase`` picks what DiffKG times: ``recommendation`` (the default,
above), ``diffusion`` (one denoiser step of phase 1) or ``rebuild`` (phase
2, whole, ``--steps`` times); for the other models it is their training
step (KGAT's CF step, KGCL's recommendation step, not their KG steps).

``--floor`` times, at the data's shapes, only the kernels no
implementation of that work can skip (:mod:`floors`: for DiffKG's
recommendation step the :math:`2L` sparse products of the user-item
propagation and InfoNCE's score products, exponentials and gradient
products; for each phase and each KG peer its own list there). Their sum
is ``floor_s``, and the record's ``ratio_to_floor`` is the measured step
(or rebuild) over it: a step cannot be faster than its floor unless a
kernel is.

``--device cuda`` times the step on a GPU (each step to its last kernel)
and records the device's peak memory, ``peak_gpu_mb``.

``--table FILE`` prints BENCHMARKS.md's table of one commit's ``--compare
--floor`` records in a results file (the newest commit in it unless
``--commit`` names one) and exits; with ``--phases``, the table of its
``--floor`` records of every phase, model and thread count.

    python benchmarks/speed_step.py --data ../shared/data/alibaba-ifashion \
        --model diffkg --steps 10 --threads 2 --compare \
        --output benchmarks/results/speed-step.jsonl
    python benchmarks/speed_step.py --data ../shared/data/lastfm-hetrec2011 \
        --phase diffusion --floor --output benchmarks/results/phases.jsonl
"""
import argparse
import functools
import json
import os
import statistics
import sys
import time

import torch
from common import emit, peak_rss_gb, synchronize
from floors import FLOORS

from diffkg_pyg.data import load_dataset
from diffkg_pyg.process import peak_gpu_mb, retain_freed_memory
from diffkg_pyg.testing import reference_recommendation_loss
from diffkg_pyg.train import Trainer, get_recipe
from diffkg_pyg.version import package_commit


def build(args):
    data = load_dataset(args.data, log=False)
    recipe_class = get_recipe(args.model)
    names = {h.name for h in recipe_class.hyperparameters}
    recipe = recipe_class(**({'use_compile': False} if args.no_compile and
                             'use_compile' in names else {}))
    trainer = Trainer(recipe, data, seed=args.seed, log=lambda line: None,
                      max_batches=args.warmup + args.steps,
                      device=torch.device(args.device))
    if args.phase == 'recommendation':
        trainer.recipe.loop.rebuild(batch_size=trainer.context.batch_size,
                                    generator=trainer.context.generator)
    return trainer


#: The loss name (see ``TrainContext.step``) of the steps each phase times.
TIMED_LOSS = {'diffusion': 'denoiser_loss'}


def timed_pass(trainer, phase='recommendation'):
    r"""One capped pass of the model's steps of :obj:`phase`; the seconds
    of every step (from the end of the previous one, batch sampling
    included). Only the steps of the phase's loss count (KGAT's and KGCL's
    KG steps are not timed), and the time of the others is not charged to
    the next timed step. For :obj:`'rebuild'` one DiffKG rebuild."""
    recipe, context, model = trainer.recipe, trainer.context, trainer.model
    model.train()
    if phase == 'rebuild':
        synchronize(context.device)
        start = time.perf_counter()
        recipe.loop.rebuild(batch_size=context.batch_size,
                            generator=context.generator)
        synchronize(context.device)
        return [time.perf_counter() - start]
    times, step = [], context.accounting.step
    timed = TIMED_LOSS.get(phase, 'loss')
    last = [0.0]

    def timed_step(optimizers, loss, name='loss', **terms):
        step(optimizers, loss, name, **terms)
        synchronize(context.device)  # A GPU's step ends when its kernels do.
        now = time.perf_counter()
        if name == timed:
            times.append(now - last[0])
        last[0] = now

    context.accounting.step = timed_step
    last[0] = time.perf_counter()
    try:
        if phase == 'diffusion':
            recipe.train_diffusion(model, context, 1)
            # Full batches only (the pass ends with a smaller one), unless
            # there is no full one.
            del times[max(context.graph.kg_heads.numel() // context.batch_size,
                          1):]
        elif hasattr(recipe, 'train_recommendation'):
            recipe.train_recommendation(model, context, 1)
        else:
            recipe.train_epoch(model, context, 1)
    finally:
        context.accounting.step = step
    return times


def step_difference(trainer):
    r"""One batch, the same parameters and dropout seed: the largest
    absolute difference between the package's and the reference step's
    loss, and between their gradients of every parameter."""
    model, context = trainer.model, trainer.context
    loop = trainer.recipe.loop
    user, pos, neg = next(iter(context.bpr_batches()))
    adj = context.graph.adjacency(True)
    kgs = model.views(loop.sampled_kg, loop.denoised_kg)
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


def measure(trainer, args, warmup):
    r"""The seconds of :obj:`args.steps` steps (or rebuilds) after
    :obj:`warmup` ones, over as many passes as that takes."""
    times = []
    while len(times) < warmup + args.steps:
        timed = timed_pass(trainer, args.phase)
        if not timed:
            raise RuntimeError(f'a pass of {args.model} timed no step')
        times += timed
    return times[warmup:warmup + args.steps]


def phase_table(path, commit=None):
    r"""The Markdown table of the :obj:`--floor` records of one commit (the
    file's newest unless :obj:`commit` is given): a row for every phase and
    model, its measured seconds against its floor at each thread count."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    floors = [r for r in records if r['implementation'] == 'floor' and
              'ratio_to_floor' in r]
    commit = commit or floors[-1]['commit']
    rows = {}
    for r in floors:  # The last record of each kind.
        if r['commit'].startswith(commit):
            rows.setdefault((r['data'], r['model'], r['phase']),
                            {})[r['threads']] = r
    threads = sorted({t for cells in rows.values() for t in cells})
    lines = [f'Package code of `{commit[:7]}`; each cell measured / floor '
             '= ratio:', '',
             '| data | model: phase | ' + ' | '.join(
                 f'{t} thread{"s" * (t > 1)}' for t in threads) +
             f' | largest floor part ({threads[-1]} threads) |',
             '|---|---|' + '---:|' * len(threads) + '---|']
    for (data, model, phase), cells in sorted(rows.items()):
        row = [f'{data} | {model}: {phase}']
        for t in threads:
            r = cells.get(t)
            row.append('' if r is None else
                       f"{r['measured_s']:.3f} / {r['floor_s']:.3f} s = "
                       f"**{r['ratio_to_floor']:.2f}**")
        r = cells[max(cells)]
        parts = {k: v for k, v in r.items() if k.endswith('_s') and
                 k not in ('floor_s', 'measured_s')}
        name = max(parts, key=parts.get)
        row.append(f'{name[:-2]} {parts[name]:.3f} s')
        lines.append('| ' + ' | '.join(row) + ' |')
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
    parser.add_argument('--no-compile', action='store_true',
                        help='eager (DiffKG compiles its denoiser by '
                        'default)')
    parser.add_argument('--compare', action='store_true',
                        help="DiffKG: the package's step beside the "
                        'reference step')
    parser.add_argument('--phase', default=None,
                        choices=['recommendation', 'diffusion', 'rebuild'],
                        help='DiffKG: the phase to time (default: '
                        'recommendation; see above)')
    parser.add_argument('--floor', action='store_true',
                        help="the timed work's unavoidable kernels alone, "
                        'and the measured / floor ratio (see above)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='--compare: alternating passes of each; '
                        '--floor: rounds of the floor and the measured work '
                        'in turn')
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
    parser.add_argument('--phases', action='store_true',
                        help='--table: the table of the --floor records')
    args = parser.parse_args()
    if args.table:
        print((phase_table if args.phases else table)(args.table,
                                                      args.commit))
        return
    if args.data is None:
        parser.error('--data is required (or --table)')
    if args.model != 'diffkg' and (args.compare or args.phase or
                                   args.implementation != 'package'):
        parser.error('the reference step and the phases are DiffKG\'s: '
                     '--compare, --phase and --implementation reference '
                     'need --model diffkg')
    args.phase = args.phase or ('recommendation' if args.model == 'diffkg'
                                else 'step')
    if args.compare and args.phase != 'recommendation':
        parser.error('--compare times the recommendation step (no --phase)')
    if args.floor and (args.model, args.phase) not in FLOORS:
        parser.error(f'no floor is written for {args.model} (models with '
                     'one: ' + ', '.join(sorted({m for m, _ in FLOORS})) +
                     ')')
    torch.set_num_threads(args.threads)
    retain_freed_memory(args.device)  # As the command line does.
    trainer = build(args)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        timed_pass(trainer, args.phase)  # Warm-up outside the profile.
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            timed_pass(trainer, args.phase)
        print(prof.key_averages().table(sort_by='self_cpu_time_total',
                                        row_limit=30), file=sys.stderr)
    base = {'benchmark': 'step', 'data': os.path.basename(
        os.path.normpath(args.data)), 'model': args.model,
        'phase': args.phase, 'threads': args.threads,
        'device': args.device, 'commit': package_commit()}
    if args.compare:
        diff, scale = step_difference(trainer)
        times = compare(trainer, args)
    else:
        if args.implementation == 'reference':
            trainer.model.loss = functools.partial(
                reference_recommendation_loss, trainer.model)
        times = {args.implementation: measure(trainer, args, args.warmup)}
    floors = []
    for round_ in range(args.rounds if args.floor else 0):
        # The floor's kernels and the measured work in turn (--compare
        # alternated its own rounds already); the medians of both.
        if round_ and not args.compare:
            times[args.implementation] += measure(trainer, args, 0)
        floors.append(FLOORS[args.model, args.phase](trainer, args.steps))
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
    if floors:
        record = {k: statistics.median(f[k] for f in floors)
                  if k.endswith('_s') else v for k, v in floors[0].items()}
        step_s = records[0]['step_s']
        records.append({**base, 'implementation': 'floor', **record,
                        'measured_s': step_s, 'rounds': args.rounds,
                        'ratio_to_floor': step_s / record['floor_s']})
    emit(records, args.output)


if __name__ == '__main__':
    main()
