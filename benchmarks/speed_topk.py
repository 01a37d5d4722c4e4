r"""Top-K for every user of a dataset, train items left out: the exact
search (all scores of a batch, then :func:`torch.topk`) against faiss's
exact inner-product index through PyG's ``MIPSKNNIndex``
(:func:`~diffkg_pyg.nn.functional.top_k_inner_product`), side by side in
one process at a fixed thread count, on the dataset's real train pairs and
seeded random embeddings (the cost depends on the sizes, not the values).
Prints one JSON line per dataset: both times, their ratio and how many
users' lists differ and the largest difference of
the scores rank by rank (lists that differ by a floating-point tie have
the same scores).

    python benchmarks/speed_topk.py --data-root ../shared/data --threads 2
"""
import argparse
import json
import os
import statistics
import time

import torch
from common import append_records

from diffkg_pyg.csr import to_csr
from diffkg_pyg.data import USER_ITEM, load_dataset
from diffkg_pyg.nn.functional import mips_index, top_k_inner_product


def search_all(user_emb, item_emb, ptr, col, k, batch_size, index):
    out = []
    for start in range(0, user_emb.size(0), batch_size):
        users = torch.arange(start, min(start + batch_size,
                                        user_emb.size(0)))
        out.append(top_k_inner_product(user_emb, item_emb, users, k, ptr,
                                       col, index=index))
    return [torch.cat(parts) for parts in zip(*out)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--datasets', nargs='+', default=[
        'lastfm-hetrec2011', 'last-fm', 'alibaba-ifashion'])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--k', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--output', default='benchmarks/results/topk.jsonl')
    args = parser.parse_args()
    import faiss
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    records = []
    for name in args.datasets:
        data = load_dataset(os.path.join(args.data_root, name), log=False)
        num_users = data['user'].num_nodes
        num_items = data['item'].num_nodes
        ptr, col = to_csr(data[USER_ITEM].edge_index, num_users)
        generator = torch.Generator().manual_seed(0)
        user_emb = torch.randn(num_users, args.dim, generator=generator)
        item_emb = torch.randn(num_items, args.dim, generator=generator)
        start = time.perf_counter()
        index = mips_index(item_emb)
        build = time.perf_counter() - start
        times = {'exact': [], 'mips': []}
        lists = {}
        for _ in range(args.repeats):  # Alternated, so drift hits both.
            for method in times:
                start = time.perf_counter()
                lists[method] = search_all(
                    user_emb, item_emb, ptr, col, args.k, args.batch_size,
                    index if method == 'mips' else None)
                times[method].append(time.perf_counter() - start)
        exact, mips = (statistics.median(times[m]) for m in times)
        record = {
            'dataset': name, 'num_users': num_users, 'num_items': num_items,
            'dim': args.dim, 'k': args.k, 'batch_size': args.batch_size,
            'exact_s': exact, 'mips_s': mips, 'index_build_s': build,
            'ratio': exact / mips,
            'users_with_other_lists': int(
                (lists['exact'][0] != lists['mips'][0]).any(dim=1).sum()),
            # Where lists differ by a tie, the scores by rank still agree:
            'max_score_diff_by_rank': float(
                (lists['exact'][1] - lists['mips'][1]).abs().max())}
        print(json.dumps(record), flush=True)
        records.append(record)
    append_records(args.output, 'topk', args.threads, records)


if __name__ == '__main__':
    main()
