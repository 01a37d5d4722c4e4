r"""The relation-aware attention layer, forward + backward: the package's
per-node score tables (:class:`~diffkg_pyg.nn.KGAttentionConv`) against
the per-edge concatenation (:class:`diffkg_pyg.testing.PerEdgeAttention`),
side by side in one run.

    python benchmarks/speed_attention.py --data-root ../shared/data
"""
import json
import statistics
import time

import torch
import torch_geometric.typing as pyg_typing
from common import (
    DIM,
    append_records,
    case_parser,
    load_kg,
    peak_rss_gb,
    run_case,
)

from diffkg_pyg.nn import KGAttentionConv
from diffkg_pyg.testing import PerEdgeAttention


def attention_case(args) -> dict:
    torch.manual_seed(0)
    edge_index, edge_type, n, _ = load_kg(args.data_root, args.kg)
    layer = (KGAttentionConv if args.method == 'per-node' else
             PerEdgeAttention)(DIM)
    x = torch.randn(n, DIM, requires_grad=True)
    relation = torch.randn(int(edge_type.max()) + 1, DIM, requires_grad=True)
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        layer(x, edge_index, edge_type, relation).square().sum().backward()
        times.append(time.perf_counter() - start)
    return {'kg': args.kg, 'method': args.method, 'num_entities': n,
            'num_edges': int(edge_index.size(1)),
            'median_seconds': statistics.median(times[1:]),
            'peak_rss_gb': peak_rss_gb(),
            'torch_scatter': pyg_typing.WITH_TORCH_SCATTER,
            'torch_sparse': pyg_typing.WITH_TORCH_SPARSE}


def main():
    parser = case_parser(__doc__.split('\n\n')[0],
                         ['per-node', 'per-edge'], kgs=['last-fm'])
    parser.add_argument('--python', default=None,
                        help='run the cases with this interpreter')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(attention_case(args)))
        return
    records = []
    for kg in args.kgs:
        pair = [run_case(__file__, args, kg, m) for m in ('per-node',
                                                          'per-edge')]
        records += pair
        if any('error' in r for r in pair):
            print(f'{kg}: failed: {pair}', flush=True)
            continue
        node, edge = (r['median_seconds'] for r in pair)
        print(f"{kg}: {pair[0]['num_edges']:,} edges | per-node split "
              f"{node:.3f} s | per-edge concat {edge:.3f} s | ratio "
              f"{edge / node:.2f}x (forward + backward, median of "
              f"{args.repeats})")
    append_records(args.output, 'attention', args.threads, records)


if __name__ == '__main__':
    main()
