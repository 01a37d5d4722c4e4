r"""The sampled noise's support lookup (which of the K drawn columns lie
outside each row's support): one search per support entry among the K
columns, as the package does, against one search per cell of the B x K
grid among the support entries (the package before `9824fae`), side by
side in one process: the lookups alone (equal outputs checked) and whole
denoiser steps with either lookup.

    python benchmarks/speed_noise.py --threads 2 --kgs alibaba-ifashion
"""
import json
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
    run_case,
    sparse_steps,
)

import diffkg_pyg.nn.kg_noise as kg_noise
from diffkg_pyg.csr import to_csr
from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.nn.kg_diffusion import sample_support
from diffkg_pyg.optim import SparseRowAdam

PER_ENTRY = kg_noise._drawn_outside


def per_cell(columns, row, index, batch_size):
    r"""The grid lookup: every (row, column) cell searched among the sorted
    support keys."""
    num_entities = int(torch.maximum(columns.max(), index.max())) + 1
    key = torch.sort(row * num_entities + index).values
    query = (torch.arange(batch_size)[:, None] * num_entities +
             columns[None, :])
    position = torch.searchsorted(key, query).clamp(max=key.numel() - 1)
    return key[position] != query


LOOKUPS = {'per-entry': PER_ENTRY, 'per-cell': per_cell}


def noise_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, _, n, num_items = load_kg(args.data_root, args.kg)
    ptr, col = to_csr(edge_index, n)
    heads = torch.nonzero(ptr[1:] > ptr[:-1]).view(-1)
    heads = heads[torch.randperm(heads.numel())]
    batches = list(torch.split(heads, BATCH))[:args.max_batches or 6]
    num_columns = min(16384, n - 1)
    record = {'kg': args.kg, 'num_entities': n, 'num_columns': num_columns,
              'batches': len(batches)}
    # The lookups alone, on the supports of the batches:
    lookup = {name: 0.0 for name in LOOKUPS}
    for batch in batches:
        support = sample_support(ptr, col, batch, n)
        row = torch.repeat_interleave(torch.arange(batch.numel()),
                                      support.ptr.diff())
        columns = torch.randperm(n)[:num_columns].sort().values
        out = {}
        for name, fn in LOOKUPS.items():
            start = time.perf_counter()
            out[name] = fn(columns, row, support.index, batch.numel())
            lookup[name] += time.perf_counter() - start
        if not torch.equal(out['per-entry'], out['per-cell']):
            raise AssertionError('the two lookups differ')
    record['lookup_seconds'] = lookup
    # Whole denoiser steps (noise columns sampled, as DiffKG trains):
    item_user, entity = torch.randn(num_items, DIM), torch.randn(n, DIM)
    diffusion = GaussianDiffusion()
    step = {name: [] for name in LOOKUPS}
    for repeat in range(args.repeats):
        order = list(LOOKUPS) if repeat % 2 == 0 else list(LOOKUPS)[::-1]
        for name in order:
            kg_noise._drawn_outside = LOOKUPS[name]
            torch.manual_seed(1)
            model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
            optimizers = [torch.optim.Adam(model.dense_parameters()),
                          SparseRowAdam(model.sparse_parameters())]
            sparse_steps(model, optimizers, diffusion, batches[:1], ptr,
                         col, item_user, entity, num_columns)  # Warm-up.
            start = time.perf_counter()
            sparse_steps(model, optimizers, diffusion, batches[1:], ptr,
                         col, item_user, entity, num_columns)
            step[name].append((time.perf_counter() - start) /
                              (len(batches) - 1))
    kg_noise._drawn_outside = PER_ENTRY
    record['step_seconds'] = step
    record['lookup_speed_up'] = lookup['per-cell'] / lookup['per-entry']
    record['step_speed_up'] = min(step['per-cell']) / min(step['per-entry'])
    return record


def main():
    parser = case_parser(__doc__.split('\n\n')[0], ['both'],
                         kgs=['alibaba-ifashion'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(noise_case(args)))
        return
    records = [run_case(__file__, args, kg, 'both') for kg in args.kgs]
    for record in records:
        print(json.dumps(record))
    append_records(args.output, 'noise-lookup', args.threads, records)


if __name__ == '__main__':
    main()
