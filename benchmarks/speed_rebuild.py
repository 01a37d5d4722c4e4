r"""The rebuild of the denoised KG: the package's vectorised selection
against the authors' per-edge Python loop, on the same scores, side by
side in one run (and the whole rebuild with its denoiser passes); with
``--compare heads``, the rebuild that scores only the heads with more than
``rebuild_k`` edges against one that scores every head, side by side.

    python benchmarks/speed_rebuild.py --data-root ../shared/data
    python benchmarks/speed_rebuild.py --compare heads --threads 1 \
        --kgs lastfm-hetrec2011 alibaba-ifashion
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
from diffkg_pyg.nn.kg_diffusion import (
    rebuild_kg,
    rebuild_scores,
    segment_top_k,
    select_edges,
)


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


def heads_case(args) -> dict:
    r"""Seconds of :func:`rebuild_kg` (which scores only the heads it must
    rank) and of the same selection from every head's scores, for
    :obj:`rebuild_k` 1 and 3 and the given numbers of diffusion steps."""
    torch.manual_seed(0)
    edge_index, edge_type, n, _ = load_kg(args.data_root, args.kg)
    model = SparseDenoiser(n, HIDDEN, TIME_CHANNELS)
    degree = torch.unique_consecutive(edge_index[0], return_counts=True)[1]
    record = {'kg': args.kg, 'num_entities': n,
              'num_edges': int(edge_index.size(1)),
              'num_heads': int(degree.numel())}
    for steps in args.steps:
        diffusion = GaussianDiffusion(steps)
        for k in (1, 3):
            key = f'steps{steps}_k{k}'
            start = time.perf_counter()
            score = rebuild_scores(model, diffusion, edge_index)
            every = select_edges(score, edge_index, edge_type, n, k,
                                 generator=torch.Generator().manual_seed(0))
            every_seconds = time.perf_counter() - start
            start = time.perf_counter()
            ranked = rebuild_kg(model, diffusion, edge_index, edge_type, n,
                                k, generator=torch.Generator().manual_seed(0))
            ranked_seconds = time.perf_counter() - start
            record[key] = {
                'heads_scored': int((degree > k).sum()),
                'every_head_seconds': every_seconds,
                'ranked_heads_seconds': ranked_seconds,
                'speed_up': every_seconds / ranked_seconds,
                'same_edges': all(torch.equal(a, b)
                                  for a, b in zip(every, ranked)),
            }
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
    parser = case_parser(__doc__.split('\n\n')[0], ['both', 'heads'],
                         kgs=['alibaba-ifashion'])
    parser.add_argument('--compare', choices=['selection', 'heads'],
                        default='selection',
                        help="'selection': the vectorised selection against "
                        "the authors' loop; 'heads': scoring only the heads "
                        "to rank against scoring every head")
    parser.add_argument('--steps', type=int, nargs='+', default=[5, 20],
                        help="diffusion steps of '--compare heads'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    method = args.method or {'selection': 'both',
                             'heads': 'heads'}[args.compare]
    if args.case:
        case = heads_case if method == 'heads' else rebuild_case
        print(json.dumps(case(args)))
        return
    extra = ['--steps', *map(str, args.steps)]
    records = [run_case(__file__, args, kg, method, extra)
               for kg in args.kgs]
    for record in records:
        print(json.dumps(record))
    append_records(args.output, f'rebuild-{method}' if method != 'both'
                   else 'rebuild', args.threads, records)


if __name__ == '__main__':
    main()
