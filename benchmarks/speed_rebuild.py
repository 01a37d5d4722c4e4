r"""The rebuild of the denoised KG: the package's vectorised selection
against the authors' per-edge Python loop, on the same scores, side by
side in one run (and the whole rebuild with its denoiser passes).

    python benchmarks/speed_rebuild.py --data-root ../shared/data
"""
import json
import time

import torch
from common import (
    HIDDEN,
    TIME_CHANNELS,
    append_records,
    case_parser,
    load_kg,
    run_case,
)

from diffkg_pyg.nn import GaussianDiffusion, SparseDenoiser
from diffkg_pyg.nn.kg_diffusion import rebuild_kg, segment_top_k


def rebuild_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, _ = load_kg(args.data_root, args.kg)
    model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
    diffusion = GaussianDiffusion()
    record = {'kg': args.kg, 'num_entities': n,
              'num_edges': int(edge_index.size(1))}
    start = time.perf_counter()
    rebuild_kg(model, diffusion, edge_index, edge_type, n,
               generator=torch.Generator().manual_seed(0))
    record['vectorised_seconds'] = time.perf_counter() - start
    # The denoised score of every edge (shared by both selections):
    score = torch.rand(edge_index.size(1),
                       generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    keep = segment_top_k(score, edge_index[0], 1)
    kept = edge_index[:, keep]
    pairs = torch.cat([kept, kept.flip(0)], dim=1)
    torch.unique(pairs[0] * n + pairs[1])
    record['vectorised_selection_seconds'] = time.perf_counter() - start
    start = time.perf_counter()
    _literal_selection(edge_index, edge_type, score)
    record['literal_selection_seconds'] = time.perf_counter() - start
    return record


def _literal_selection(edge_index, edge_type, score, k=1, keep_rate=0.5):
    # The authors' loop, literally: per head, per edge, Python objects.
    import random
    relation = {}
    per_head = {}
    for e in range(edge_index.size(1)):
        h, t = int(edge_index[0, e].numpy()), int(edge_index[1, e].numpy())
        relation[(h, t)] = int(edge_type[e].numpy())
        per_head.setdefault(h, []).append((float(score[e].numpy()), t))
    edges, seen = [], set()
    for h, candidates in per_head.items():
        for _, t in sorted(candidates, reverse=True)[:k]:
            for pair in ((h, t), (t, h)):
                if pair in seen or pair not in relation:
                    continue
                seen.add(pair)
                edges.append((pair[0], relation[pair], pair[1]))
    return [e for e in edges if random.random() < keep_rate]


def main():
    parser = case_parser(__doc__.split('\n\n')[0], ['both'],
                         kgs=['alibaba-ifashion'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(rebuild_case(args)))
        return
    records = [run_case(__file__, args, kg, 'both') for kg in args.kgs]
    for record in records:
        print(json.dumps(record))
    append_records(args.output, 'rebuild', args.threads, records)


if __name__ == '__main__':
    main()
