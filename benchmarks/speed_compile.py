r"""torch.compile of the denoiser's hot path: denoiser steps eager against
compiled (first pass, compile included, and the steady state), side by
side in one run.

    python benchmarks/speed_compile.py --data-root ../shared/data \
        --max-batches 20
"""
import json
import statistics
import time

import torch
from common import (
    BATCH,
    DIM,
    HIDDEN,
    TIME_CHANNELS,
    append_records,
    case_parser,
    load_kg,
    peak_rss_gb,
    run_case,
    sparse_steps,
)

from diffkg_pyg.csr import to_csr
from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.optim import SparseRowAdam


def compile_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, _, n, num_items = load_kg(args.data_root, args.kg)
    ptr, col = to_csr(edge_index, n)
    heads = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    batches = list(torch.split(heads[torch.randperm(heads.numel())],
                               BATCH))[:args.max_batches or None]
    diffusion = GaussianDiffusion()
    item_user, entity = torch.randn(num_items, DIM), torch.randn(n, DIM)
    model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS,
                           use_compile=args.method == 'compiled')
    optimizers = [SparseRowAdam(model.sparse_parameters())]

    def epoch():
        start = time.perf_counter()
        sparse_steps(model, optimizers, diffusion, batches, ptr, col,
                     item_user, entity)
        return time.perf_counter() - start

    first = epoch()
    steady = statistics.median(epoch() for _ in range(args.repeats))
    return {'kg': args.kg, 'method': args.method, 'batches': len(batches),
            'first_pass_seconds': first, 'steady_pass_seconds': steady,
            'peak_rss_gb': peak_rss_gb()}


def main():
    parser = case_parser(__doc__.split('\n\n')[0], ['eager', 'compiled'],
                         kgs=['alibaba-ifashion'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(compile_case(args)))
        return
    records = []
    for kg in args.kgs:
        pair = [run_case(__file__, args, kg, m) for m in ('eager',
                                                          'compiled')]
        records += pair
        for record in pair:
            print(json.dumps(record))
    append_records(args.output, 'compile', args.threads, records)


if __name__ == '__main__':
    main()
