r"""The KG recommenders' reference code beside ours, on our split.

Two steps, in two environments:

``export`` (the package's environment) writes a dataset's split in the
authors' file format: ``train.txt`` (our train pairs, after the validation
hold-out), ``valid.txt``, ``test.txt`` (``user item item ...`` per line)
and ``kg_final.txt`` (the unique triplets)::

    python benchmarks/kg_reference.py export ../shared/data/lastfm-hetrec2011 \
        /tmp/kg-ref/lastfm-hetrec2011

``kgin`` (an environment with the authors' requirements: torch, numpy,
scipy, networkx, prettytable, torch_scatter; not this package) trains the
authors' KGIN (a checkout of huangtinglin/Knowledge_Graph_based_Intent_Network,
commit 0e43517) on that folder and writes one result JSON::

    python benchmarks/kg_reference.py kgin --reference DIR \
        --data /tmp/kg-ref/lastfm-hetrec2011 --seed 0 --output FILE.json \
        -- --lr 0.001 --context_hops 3

What differs from the authors' ``main.py`` (the patch, nothing else): the
seed is the ``--seed`` given (theirs is 2020); their code runs on the CPU
(``--cuda ''``: their flag is ``type=bool``); ``np.asfarray`` (gone in
numpy 2) is ``np.asarray(., float)``; the best epoch is selected, and
early stopping counted, on our validation split instead of the test set
(their schedule: validation at epoch 1 and every 10 epochs, stop after 10
validations without a gain in Recall@20); the test is scored at each
validation with the train and validation items masked, and the test at the
best validation epoch is reported. Their model, data loader, sampler,
optimiser and evaluation (``test``) are imported unchanged.
"""
import argparse
import json
import os
import os.path as osp
import random
import sys
import time


def write_lists(path, pairs, num_users):
    items = [[] for _ in range(num_users)]
    for user, item in pairs.t().tolist():
        items[user].append(item)
    with open(path, 'w') as f:
        for user, row in enumerate(items):
            if row:
                f.write(' '.join(str(v) for v in [user] + row) + '\n')


def export(args):
    from diffkg_pyg.data import USER_ITEM, kg_triplets, load_dataset
    data = load_dataset(args.dataset)
    store = data[USER_ITEM]
    os.makedirs(args.folder, exist_ok=True)
    num_users = int(data['user'].num_nodes)
    for name, pairs in (('train', store.edge_index),
                        ('valid', store.val_edge_index),
                        ('test', store.test_edge_index)):
        write_lists(osp.join(args.folder, f'{name}.txt'), pairs, num_users)
    with open(osp.join(args.folder, 'kg_final.txt'), 'w') as f:
        for head, relation, tail in kg_triplets(data).t().tolist():
            f.write(f'{head} {relation} {tail}\n')
    print(f'{args.dataset} -> {args.folder}: {num_users} users, '
          f'{int(data["item"].num_nodes)} items')


def read_lists(path):
    out = {}
    with open(path) as f:
        for line in f:
            ids = [int(v) for v in line.split()]
            out[ids[0]] = ids[1:]
    return out


def metrics(ret):
    # Their Ks are [20, 40, 60, 80, 100]: index 0 is @20, 1 is @40.
    return {'recall@20': float(ret['recall'][0]),
            'ndcg@20': float(ret['ndcg'][0]),
            'recall@40': float(ret['recall'][1]),
            'ndcg@40': float(ret['ndcg'][1])}


def run_kgin(args, extra):
    import numpy as np
    import torch
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
    torch.set_num_threads(args.threads)
    folder = osp.abspath(args.data)
    sys.argv = ['main.py', '--dataset', osp.basename(folder), '--data_path',
                osp.dirname(folder) + '/', '--cuda', '', *extra]
    sys.path.insert(0, osp.abspath(args.reference))
    import main as reference  # noqa: E402  (their main.py, guarded)
    from modules.KGIN import Recommender
    from utils import evaluate
    from utils.data_loader import load_data
    from utils.helper import early_stopping
    from utils.parser import parse_args

    reference_args = parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_cf, test_cf, user_dict, n_params, graph, mat_list = load_data(
        reference_args)
    reference.n_items = n_params['n_items']
    reference.device = torch.device('cpu')
    train_set = user_dict['train_user_set']
    valid_set = read_lists(osp.join(folder, 'valid.txt'))
    known = {u: list(train_set.get(u, [])) + valid_set.get(u, [])
             for u in set(train_set) | set(valid_set)}
    valid_dict = {'train_user_set': train_set, 'test_user_set': valid_set}
    test_dict = {'train_user_set': known,
                 'test_user_set': user_dict['test_user_set']}

    model = Recommender(n_params, reference_args, graph, mat_list[2][0])
    optimizer = torch.optim.Adam(model.parameters(), lr=reference_args.lr)
    train_cf_pairs = torch.LongTensor(
        np.array([[cf[0], cf[1]] for cf in train_cf], np.int32))
    best, best_value, stopping_step, history = None, 0.0, 0, []
    start = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(reference_args.epoch):
        index = np.arange(len(train_cf))
        np.random.shuffle(index)
        train_cf_pairs = train_cf_pairs[index]
        epoch_start = time.perf_counter()
        s, loss = 0, 0.0
        while s + reference_args.batch_size <= len(train_cf):
            batch = reference.get_feed_dict(
                train_cf_pairs, s, s + reference_args.batch_size,
                train_set)
            batch_loss, _, _, _ = model(batch)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            loss += float(batch_loss)
            s += reference_args.batch_size
        train_seconds += time.perf_counter() - epoch_start
        if epoch % 10 == 9 or epoch == 1:
            valid = metrics(evaluate.test(model, valid_dict, n_params))
            test = metrics(evaluate.test(model, test_dict, n_params))
            history.append({'epoch': epoch + 1, 'loss': loss,
                            'valid': valid, 'test': test})
            print(json.dumps(history[-1]), flush=True)
            best_value, stopping_step, should_stop = early_stopping(
                valid['recall@20'], best_value, stopping_step,
                expected_order='acc', flag_step=10)
            if valid['recall@20'] == best_value:
                best = history[-1]
            if should_stop:
                break
    record = {
        'model': 'kgin-reference', 'dataset': osp.basename(folder),
        'seed': args.seed, 'reference_args': vars(reference_args),
        'epochs_run': epoch + 1, 'best_epoch': best['epoch'],
        'valid': best['valid'], 'test': best['test'],
        'seconds': time.perf_counter() - start,
        'train_seconds_per_epoch': train_seconds / (epoch + 1),
        'threads': args.threads, 'history': history,
    }
    os.makedirs(osp.dirname(osp.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
        json.dump(record, f, indent=1)
    print(f"best epoch {best['epoch']}: test {best['test']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('export', help="write our split in the authors' "
                       'format')
    p.add_argument('dataset')
    p.add_argument('folder')
    p = sub.add_parser('kgin', help="train the authors' KGIN on an export")
    p.add_argument('--reference', required=True)
    p.add_argument('--data', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--output', required=True)
    args, extra = parser.parse_known_args()
    if extra and extra[0] == '--':
        extra = extra[1:]
    if args.command == 'export':
        export(args)
    else:
        run_kgin(args, extra)


if __name__ == '__main__':
    main()
