r"""The diffusion phase of DiffKG (one pass of denoiser steps over every KG
head, then the rebuild), sparse (the package) against dense (the
authors' formulation, :class:`diffkg_pyg.testing.DenseDenoiser`), side by
side in one run, every case in its own process for its peak RSS.

    python benchmarks/speed_diffusion.py --data-root ../shared/data
    python benchmarks/speed_diffusion.py --kgs alibaba-ifashion \
        --max-batches 4   # dense: time 4 batches and scale (labelled)
"""
import json
import time

import torch
from common import (
    BATCH,
    DIM,
    HIDDEN,
    KGS,
    TIME_CHANNELS,
    append_records,
    case_parser,
    current_rss_gb,
    load_kg,
    peak_rss_gb,
    run_case,
    sparse_steps,
)

from diffkg_pyg.csr import gather_rows, to_csr
from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.nn.kg_diffusion import rebuild_kg, segment_top_k
from diffkg_pyg.optim import SparseRowAdam
from diffkg_pyg.testing import DenseDenoiser


def dense_memory_gb(num_entities: int) -> float:
    r"""Lower bound of the dense phase's memory: weights, gradients and two
    Adam moments of the two N x H layers, plus about eight B x N float
    activations (rows, noise, input, output and their gradients)."""
    weights = 2 * num_entities * HIDDEN * 4
    return (4 * weights + 8 * BATCH * num_entities * 4) / 2**30


def diffusion_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, num_items = load_kg(args.data_root, args.kg)
    ptr, col = to_csr(edge_index, n)
    heads = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    heads = heads[torch.randperm(heads.numel())]
    batches = list(torch.split(heads, BATCH))
    item_user = torch.randn(num_items, DIM)
    entity = torch.randn(n, DIM)
    diffusion = GaussianDiffusion()
    baseline = current_rss_gb()
    measured = batches  # The sparse pass always runs in full.
    if args.method == 'dense' and args.max_batches:
        measured = batches[:args.max_batches]
    start = time.perf_counter()
    if args.method == 'sparse':
        model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
        optimizers = [torch.optim.Adam(model.dense_parameters()),
                      SparseRowAdam(model.sparse_parameters())]
        sparse_steps(model, optimizers, diffusion, measured, ptr, col,
                     item_user, entity)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        rebuild_kg(model, diffusion, edge_index, edge_type, n)
        rebuild_seconds = time.perf_counter() - start
        rebuild_scale = 1.0
    else:
        model = DenseDenoiser(n, HIDDEN, TIME_CHANNELS)
        optimizer = torch.optim.Adam(model.parameters())
        for batch in measured:
            row, tail = gather_rows(ptr, col, batch)
            x0 = torch.zeros(batch.numel(), n)
            x0[row, tail] = 1.0
            t = torch.randint(diffusion.steps, batch.shape)
            x_t = diffusion.q_sample(x0, t[:, None], torch.randn_like(x0))
            x_hat = model(x_t, t)
            diff = (diffusion.loss_weight[t].float() *
                    (x0 - x_hat).square().mean(dim=-1)).mean()
            z = x_hat[:, :num_items] @ item_user
            ckgc = (z - entity[batch]).square().mean()
            loss = 0.5 * diff + 0.5 * ckgc
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_seconds = time.perf_counter() - start
        model.eval()
        # As the sparse rebuild does: a head with one edge keeps it, so
        # only the heads with more are denoised.
        ranked = heads[(ptr[heads + 1] - ptr[heads]) > 1]
        ranked_batches = list(torch.split(ranked, BATCH))
        start = time.perf_counter()
        rebuild_batches = min(len(ranked_batches),
                              args.max_batches or len(ranked_batches))
        with torch.no_grad():
            for batch in ranked_batches[:rebuild_batches]:
                row, tail = gather_rows(ptr, col, batch)
                x = torch.zeros(batch.numel(), n)
                x[row, tail] = 1.0
                for i in reversed(range(diffusion.steps)):
                    t = torch.full(batch.shape, i)
                    x = diffusion.posterior_mean(model(x, t), x, t[:, None])
                segment_top_k(x[row, tail], row, 1)
        rebuild_seconds = time.perf_counter() - start
        rebuild_scale = len(ranked_batches) / max(rebuild_batches, 1)
    scale = len(batches) / len(measured)
    return {
        'kg': args.kg, 'method': args.method, 'num_entities': n,
        'num_edges': int(edge_index.size(1)), 'batches': len(batches),
        'measured_batches': len(measured),
        'train_seconds': train_seconds * scale,
        'rebuild_seconds': rebuild_seconds * rebuild_scale,
        'peak_rss_gb': peak_rss_gb(), 'baseline_rss_gb': baseline,
        'extrapolated': scale != 1.0 or rebuild_scale != 1.0,
    }


def _print_diffusion(sparse, dense, need):
    if 'error' in sparse:
        print(f"{sparse['kg']}: sparse failed: {sparse['error']}", flush=True)
        return

    def phase(r):
        return r['train_seconds'] + r['rebuild_seconds']
    line = (f"{sparse['kg']}: N {sparse['num_entities']:,}, "
            f"{sparse['num_edges']:,} edges | sparse {phase(sparse):.1f} s "
            f"(train {sparse['train_seconds']:.1f} + rebuild "
            f"{sparse['rebuild_seconds']:.1f}), peak RSS "
            f"{sparse['peak_rss_gb']:.2f} GB")
    n = sparse['num_entities']
    line += (f" | the authors' dense N x N float64 KG alone: "
             f"{n * n * 8 / 2**30:.1f} GB")
    if 'skipped' in dense or 'error' in dense:
        line += (f" | dense not run: {dense.get('skipped') or dense['error']}"
                 f" (>= {need:.1f} GB)")
    else:
        label = (f" (extrapolated from {dense['measured_batches']} of "
                 f"{dense['batches']} batches)"
                 if dense['extrapolated'] else '')

        def growth(r):
            return r['peak_rss_gb'] - r['baseline_rss_gb']
        line += (f" | dense {phase(dense):.1f} s{label}, peak RSS "
                 f"{dense['peak_rss_gb']:.2f} GB | speed-up "
                 f"{phase(dense) / phase(sparse):.1f}x, peak RSS "
                 f"{dense['peak_rss_gb'] / sparse['peak_rss_gb']:.1f}x, "
                 f"growth above the loaded data "
                 f"{growth(dense) / max(1e-3, growth(sparse)):.1f}x")
    print(line, flush=True)


def main():
    parser = case_parser(__doc__.split('\n\n')[0], ['sparse', 'dense'])
    parser.add_argument('--dense-limit-gb', type=float, default=16.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(diffusion_case(args)))
        return
    print(f'torch {torch.__version__}, {args.threads} threads')
    records = []
    for kg in args.kgs or list(KGS):
        sparse = run_case(__file__, args, kg, 'sparse')
        need = dense_memory_gb(sparse.get('num_entities', 0))
        if need > args.dense_limit_gb:
            dense = {'kg': kg, 'method': 'dense',
                     'skipped': f'needs at least {need:.1f} GB'}
        else:
            dense = run_case(__file__, args, kg, 'dense')
        records += [sparse, dense]
        _print_diffusion(sparse, dense, need)
    append_records(args.output, 'diffusion', args.threads, records)


if __name__ == '__main__':
    main()
