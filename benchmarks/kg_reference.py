r"""The KG recommenders' reference code beside ours, on our split.

Three steps, in two environments:

``export`` (the package's environment) writes a dataset's split in the
reference codes' file format: ``train.txt`` (our train pairs, after the
validation hold-out), ``valid.txt``, ``test.txt`` (``user item item ...``
per line), ``kg_final.txt`` (the unique triplets) and ``kg.txt`` (those
whose head is an item, for KGCL)::

    python benchmarks/kg_reference.py export ../shared/data/lastfm-hetrec2011 \
        /tmp/kg-ref/lastfm-hetrec2011

``kgin``, ``kgat``, ``kgcl`` (an environment with the reference's
requirements, not this package: torch 2.13, numpy, scipy, pandas,
networkx, prettytable, scikit-learn, torch_scatter (KGIN), torch_geometric
(KGCL)) train a reference on that folder and write one result JSON;
arguments after ``--`` go to the reference's own parser::

    python benchmarks/kg_reference.py kgin --reference KGIN_CHECKOUT \
        --data /tmp/kg-ref/lastfm-hetrec2011 --seed 0 --output FILE.json \
        -- --lr 0.001

``table`` prints the side-by-side table of the package's runs
(``DATASET-MODEL-sS.json``, from ``diffkg-pyg train``) and the references'
(``DATASET-MODEL-reference-sS.json``) in ``--results``.

The references: the authors' KGIN
(huangtinglin/Knowledge_Graph_based_Intent_Network, commit 0e43517), the
maintained PyTorch port of KGAT (LunaBlack/KGAT-pytorch, commit 5d6ce2f:
the authors' TensorFlow 1 code does not run here), the authors' KGCL
(yuh-yang/KGCL-SIGIR22, commit 89c8d06). Their models, data loaders,
samplers, optimisers and evaluation functions are imported unchanged; the
training loop of their ``main`` is followed, with these patches and
nothing else:

* every code: the seed is ``--seed``; it runs on the CPU; the best epoch is
  selected, and early stopping counted, on our validation split instead of
  the test set (their schedules and patience kept); the test is scored at
  each validation with the train and validation items masked, and the test
  at the best validation epoch is reported;
* KGIN: ``--cuda ''`` (their flag is ``type=bool``); ``np.asfarray``
  (gone in numpy 2) is ``np.asarray(., float)``;
* KGAT: ``--use_pretrain 0`` (the package's side runs without
  pretraining too); ``random.sample`` of dict keys (refused by Python
  3.11) takes a list; ``np.asfarray`` as above;
* KGCL: its settings come from the dataset name (``--as-dataset``, default
  ``amazon-book``: the consistency-guided augmentation); unused imports of
  ``cppimport`` and ``torch_sparse`` are stubbed; its sampling loader runs
  in the process (``num_workers=0`` instead of 12 on 2 cores); its TransE
  batch is ``--kg-batch-size`` (its ``TransR_train``'s fixed 4,096 by
  default), and the TransE step is skipped when fewer items have triplets
  than one batch (its loader then has no full batch, and ``TransR_train``
  fails on a float's ``.cpu()``).
"""
import argparse
import glob
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
    num_items = int(data['item'].num_nodes)
    with open(osp.join(args.folder, 'kg_final.txt'), 'w') as f, \
            open(osp.join(args.folder, 'kg.txt'), 'w') as items:
        for head, relation, tail in kg_triplets(data).t().tolist():
            f.write(f'{head} {relation} {tail}\n')
            if head < num_items:  # KGCL keeps the items' triplets.
                items.write(f'{head} {relation} {tail}\n')
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
    write_record(args, 'kgin-reference', folder, vars(reference_args),
                 epoch + 1, best, start, train_seconds, history)


def run_kgat(args, extra):
    import types

    import numpy as np
    import torch
    np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
    torch.set_num_threads(args.threads)
    folder = osp.abspath(args.data)
    sys.argv = ['main_kgat.py', '--data_name', osp.basename(folder),
                '--data_dir', osp.dirname(folder) + '/', '--use_pretrain',
                '0', '--seed', str(args.seed), *extra]
    sys.path.insert(0, osp.abspath(args.reference))
    import logging

    import data_loader.loader_base as loader_base
    import main_kgat as reference  # noqa: E402  (guarded by __main__)
    from data_loader.loader_kgat import DataLoaderKGAT
    from model.KGAT import KGAT
    from parser.parser_kgat import parse_kgat_args
    from utils.model_helper import early_stopping

    # Python 3.11: random.sample no longer takes dict keys.
    loader_base.random = types.SimpleNamespace(
        sample=lambda population, k: random.sample(list(population), k),
        choice=lambda population: random.choice(list(population)))
    reference_args = parse_kgat_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    logging.basicConfig(level=logging.WARNING)
    data = DataLoaderKGAT(reference_args, logging)
    device = torch.device('cpu')
    offset = data.n_entities
    valid = {u + offset: np.unique(v).astype(np.int32) for u, v in
             read_lists(osp.join(folder, 'valid.txt')).items()}
    train_dict, test_dict = data.train_user_dict, data.test_user_dict
    known = {u: np.unique(np.concatenate([train_dict.get(u, []),
                                          valid.get(u, [])])).astype(np.int32)
             for u in set(train_dict) | set(valid)}

    def evaluate(train_part, held_out):
        data.train_user_dict, data.test_user_dict = train_part, held_out
        _, metrics_dict = reference.evaluate(model, data, [20, 40], device)
        data.train_user_dict, data.test_user_dict = train_dict, test_dict
        return {f'{m}@{k}': float(metrics_dict[k][m]) for k in (20, 40)
                for m in ('recall', 'ndcg')}

    model = KGAT(reference_args, data.n_users, data.n_entities,
                 data.n_relations, data.A_in, None, None)
    cf_optimizer = torch.optim.Adam(model.parameters(), lr=reference_args.lr)
    kg_optimizer = torch.optim.Adam(model.parameters(), lr=reference_args.lr)
    history, recalls, best = [], [], None
    start, train_seconds = time.perf_counter(), 0.0
    for epoch in range(1, reference_args.n_epoch + 1):
        epoch_start = time.perf_counter()
        model.train()
        for _ in range(data.n_cf_train // data.cf_batch_size + 1):
            batch = data.generate_cf_batch(data.train_user_dict,
                                           data.cf_batch_size)
            loss = model(*batch, mode='train_cf')
            loss.backward()
            cf_optimizer.step()
            cf_optimizer.zero_grad()
        for _ in range(data.n_kg_train // data.kg_batch_size + 1):
            batch = data.generate_kg_batch(data.train_kg_dict,
                                           data.kg_batch_size,
                                           data.n_users_entities)
            loss = model(*batch, mode='train_kg')
            loss.backward()
            kg_optimizer.step()
            kg_optimizer.zero_grad()
        model(data.h_list, data.t_list, data.r_list,
              list(data.laplacian_dict.keys()), mode='update_att')
        train_seconds += time.perf_counter() - epoch_start
        if epoch % reference_args.evaluate_every == 0 or \
                epoch == reference_args.n_epoch:
            history.append({'epoch': epoch,
                            'valid': evaluate(train_dict, valid),
                            'test': evaluate(known, test_dict)})
            print(json.dumps(history[-1]), flush=True)
            recalls.append(history[-1]['valid']['recall@20'])
            best_recall, should_stop = early_stopping(
                recalls, reference_args.stopping_steps)
            if recalls.index(best_recall) == len(recalls) - 1:
                best = history[-1]
            if should_stop:
                break
    write_record(args, 'kgat-reference', folder, vars(reference_args),
                 epoch, best, start, train_seconds, history)


def run_kgcl(args, extra):
    import types

    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    folder = osp.abspath(args.data)
    # Their world.py takes its settings from the dataset's name and reads
    # ../data/NAME/ from code/: the export is linked there as --as-dataset.
    code = osp.join(osp.abspath(args.reference), 'code')
    link = osp.join(osp.dirname(code), 'data', args.as_dataset)
    os.makedirs(osp.dirname(link), exist_ok=True)
    if not osp.islink(link):
        os.symlink(folder, link)
    args.output = osp.abspath(args.output)  # Before leaving the cwd.
    os.chdir(code)
    sys.path.insert(0, code)
    sys.argv = ['main.py', '--dataset', args.as_dataset, '--seed',
                str(args.seed), '--topks', '[20, 40]', *extra]
    # Imported by their Procedure.py and never used on this path:
    sys.modules['cppimport'] = types.SimpleNamespace(imp=None)
    sys.modules['torch_sparse.tensor'] = types.SimpleNamespace(to=None)
    import utils
    import world
    utils.set_seed(world.seed)
    import dataloader
    import Procedure
    import register
    from contrast import Contrast
    kg_batch = args.kg_batch_size

    # 12 loader workers on 2 cores: the samples are drawn in the process.
    # --kg-batch-size replaces TransR_train's fixed batch of 4,096 heads.
    def loader(dataset, **kwargs):
        kwargs['num_workers'] = 0
        if isinstance(dataset, dataloader.KGDataset):
            kwargs['batch_size'] = kg_batch
        return Procedure.DataLoader_(dataset, **kwargs)
    Procedure.DataLoader_, Procedure.DataLoader = Procedure.DataLoader, loader
    dataset, kg_dataset = register.dataset, register.kg_dataset
    # With fewer items with triplets than a KG batch their TransE loader has
    # no full batch and TransR_train fails on its return (a float's .cpu()):
    # skip it then, as its loop does.
    transe = Procedure.TransR_train
    Procedure.TransR_train = lambda m, opt: (
        transe(m, opt) if len(kg_dataset) >= kg_batch else m.train())
    model = register.MODELS[world.model_name](world.config, dataset,
                                              kg_dataset)
    contrast_model = Contrast(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=world.config['lr'])
    bpr = utils.BPRLoss(model, optimizer)
    valid = {u: v for u, v in read_lists(osp.join(folder,
                                                  'valid.txt')).items()}
    test_dict = dataset.testDict
    train_pos = dataset.getUserPosItems

    def evaluate(held_out, mask_valid):
        dataset._Loader__testDict = held_out
        if mask_valid:
            dataset.getUserPosItems = lambda users: [
                np.concatenate([train_pos([u])[0], valid.get(u, [])]).astype(
                    np.int64) for u in users]
        result = Procedure.Test(dataset, model, 0, None, 0)
        dataset._Loader__testDict, dataset.getUserPosItems = (test_dict,
                                                              train_pos)
        return {f'{m}@{k}': float(result[m][i]) for i, k in
                enumerate((20, 40)) for m in ('recall', 'ndcg')}

    history, best, stopping_step = [], None, 0
    start, train_seconds = time.perf_counter(), 0.0
    for epoch in range(world.TRAIN_epochs):
        epoch_start = time.perf_counter()
        if world.train_trans:
            Procedure.TransR_train(model, optimizer)
        views = contrast_model.get_views() if world.kgc_joint else \
            contrast_model.get_views('ui')
        Procedure.BPR_train_contrast(dataset, model, bpr, contrast_model,
                                     views, epoch, optimizer, neg_k=1)
        train_seconds += time.perf_counter() - epoch_start
        if epoch >= world.test_start_epoch and \
                epoch % world.test_verbose == 0:
            history.append({'epoch': epoch + 1,
                            'valid': evaluate(valid, False),
                            'test': evaluate(test_dict, True)})
            print(json.dumps(history[-1]), flush=True)
            if best is None or history[-1]['valid']['recall@20'] > \
                    best['valid']['recall@20']:
                best, stopping_step = history[-1], 0
            else:
                stopping_step += 1
                if stopping_step >= world.early_stop_cnt:
                    break
    settings = {k: getattr(world, k) for k in (
        'kgcn', 'train_trans', 'entity_num_per_item', 'uicontrast',
        'kgc_enable', 'kgc_joint', 'kgc_temp', 'kg_p_drop', 'ui_p_drop',
        'ssl_reg', 'test_start_epoch', 'early_stop_cnt')}
    write_record(args, 'kgcl-reference', folder,
                 {**world.config, **settings, 'as_dataset': args.as_dataset,
                  'kg_batch_size': kg_batch,
                  'transe_batches': len(kg_dataset) // kg_batch},
                 epoch + 1, best, start, train_seconds, history)


def write_record(args, model, folder, reference_args, epochs, best, start,
                 train_seconds, history):
    record = {
        'model': model, 'dataset': osp.basename(folder),
        'seed': args.seed, 'reference_args': reference_args,
        'epochs_run': epochs, 'best_epoch': best['epoch'],
        'valid': best['valid'], 'test': best['test'],
        'seconds': time.perf_counter() - start,
        'train_seconds_per_epoch': train_seconds / epochs,
        'threads': args.threads, 'history': history,
    }
    os.makedirs(osp.dirname(osp.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
        json.dump(record, f, indent=1)
    print(f"best epoch {best['epoch']}: test {best['test']}")


def _train_seconds_per_epoch(record):
    if 'train_seconds_per_epoch' in record:
        return record['train_seconds_per_epoch']
    return record['phase_seconds']['train'] / record['epochs_run']


def table(args):
    import statistics

    from common import mean_std as cell  # The package's environment.

    lines = ['| dataset | model | code | test R@20 | test N@20 | best epoch '
             '| train s/epoch | seeds |',
             '|---|---|---|---:|---:|---:|---:|---:|']
    gaps = []
    for model in ('kgin', 'kgat', 'kgcl'):
        means = {}
        for side, tag in (('package', ''), ('reference', '-reference')):
            records = []
            for path in sorted(glob.glob(osp.join(
                    args.results, f'{args.dataset}-{model}{tag}-s*.json'))):
                with open(path) as f:
                    records.append(json.load(f))
            if not records:
                continue
            recall = [r['test']['recall@20'] for r in records]
            ndcg = [r['test']['ndcg@20'] for r in records]
            means[side] = (statistics.mean(recall), statistics.mean(ndcg))
            lines.append(
                f'| {args.dataset} | {model} | {side} | {cell(recall)} | '
                f'{cell(ndcg)} | {cell([r["best_epoch"] for r in records], 0)}'
                f' | {cell([_train_seconds_per_epoch(r) for r in records], 2)}'
                f' | {len(records)} |')
        if len(means) == 2:
            ours, theirs = means['package'], means['reference']
            gaps.append(f'{model}: ours - reference = '
                        f'{100 * (ours[0] / theirs[0] - 1):+.2f} % Recall@20, '
                        f'{100 * (ours[1] / theirs[1] - 1):+.2f} % NDCG@20')
    print('\n'.join(lines + [''] + gaps))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('table', help='the side-by-side table of the result '
                       'files')
    p.add_argument('--dataset', default='lastfm-hetrec2011')
    p.add_argument('--results', default='benchmarks/results/kg-peers')
    p = sub.add_parser('export', help="write our split in the authors' "
                       'format')
    p.add_argument('dataset')
    p.add_argument('folder')
    for name in ('kgin', 'kgat', 'kgcl'):
        p = sub.add_parser(name, help=f'train the reference {name} on an '
                           'export')
        p.add_argument('--reference', required=True)
        p.add_argument('--data', required=True)
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--threads', type=int, default=1)
        p.add_argument('--output', required=True)
    p.add_argument('--as-dataset', default='amazon-book',
                   help="the dataset name whose settings the authors' "
                   'world.py applies')
    p.add_argument('--kg-batch-size', type=int, default=4096,
                   help="heads per TransE step (TransR_train's fixed 4096 "
                   'by default; the package flag is --kg-batch-size)')
    args, extra = parser.parse_known_args()
    if extra and extra[0] == '--':
        extra = extra[1:]
    if args.command == 'table':
        table(args)
    elif args.command == 'export':
        export(args)
    elif args.command == 'kgin':
        run_kgin(args, extra)
    elif args.command == 'kgat':
        run_kgat(args, extra)
    else:
        run_kgcl(args, extra)


if __name__ == '__main__':
    main()
