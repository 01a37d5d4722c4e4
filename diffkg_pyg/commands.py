r"""The commands of ``diffkg-pyg`` that read what runs left behind, a saved
model (``train --save-model``) or result files (``train --output``)::

    diffkg-pyg recommend MODEL [--users FILE|all] [--k 20]
                         [--output topk.tsv] [--embeddings emb.npz]
                         [--search exact|mips]
    diffkg-pyg evaluate MODEL DATA [the data flags of train]
                        [--topk 10 20 40] [--output result.json]
    diffkg-pyg compare RESULT... [--baseline MODEL] [--metrics ...]
                       [--split test|valid] [--plot curves.png]

``recommend`` and ``evaluate`` answer in the dataset's own ids (the tokens
of RecBole or CSV files) where the model was trained on such a dataset
(see :mod:`diffkg_pyg.train.outputs`); ``compare`` is
:mod:`diffkg_pyg.train.compare`."""
import argparse
import sys
from typing import Any

from diffkg_pyg.train.flags import (
    add_data_flags,
    add_evaluation_flags,
    format_table,
    load_data,
)
from diffkg_pyg.train.preflight import check_device, positive, probe_file

__all__ = ['add_result_commands', 'run_result_command', 'RESULT_COMMANDS']

#: The commands of this module.
RESULT_COMMANDS = ('recommend', 'evaluate', 'compare')


def _common(parser: argparse.ArgumentParser, debug: bool = True) -> None:
    parser.add_argument('model', metavar='MODEL',
                        help='a model saved by `train --save-model`')
    parser.add_argument('--batch-size', type=positive, default=1024,
                        help='users scored at once (default: 1024)')
    parser.add_argument('--device', default='cpu',
                        help='where to score (default: cpu)')
    if debug:  # (add_data_flags adds it otherwise)
        parser.add_argument('--debug', action='store_true',
                            help='show Python tracebacks on errors')


def add_result_commands(commands: Any) -> None:
    r"""Adds ``recommend`` and ``evaluate`` to the sub-parsers
    :obj:`commands`."""
    recommend = commands.add_parser(
        'recommend', help='write the top-K items of users from a saved '
        'model, in the dataset\'s own ids')
    _common(recommend)
    recommend.add_argument(
        '--users', default='all', metavar='FILE|all',
        help="a file with one user id per line, or 'all' (default: all)")
    recommend.add_argument('--k', type=positive, default=20,
                           help='items per user (default: 20)')
    recommend.add_argument(
        '--output', '-o', metavar='FILE',
        help='the top-K lists: a TSV of user, rank, item, score')
    recommend.add_argument(
        '--embeddings', metavar='FILE.npz',
        help='also write the user and item embeddings (dot-product models)')
    recommend.add_argument('--keep-seen', action='store_true',
                           help="recommend a user's train items too")
    recommend.add_argument(
        '--search', choices=('exact', 'mips'), default='exact',
        help="'mips': faiss's exact inner-product index (dot-product "
        "models; the same lists, faster for many users; needs faiss-cpu) "
        '(default: exact)')
    evaluate = commands.add_parser(
        'evaluate', help="a saved model's metrics on a dataset's test pairs")
    _common(evaluate, debug=False)
    evaluate.add_argument('data', metavar='DATA',
                          help='dataset folder or built-in name')
    add_evaluation_flags(evaluate)
    evaluate.add_argument('--output', '-o', metavar='FILE',
                          help='write the metrics as JSON')
    add_data_flags(evaluate)
    compare = commands.add_parser(
        'compare', help='result files grouped by model: mean ± std, paired '
        'tests against a baseline')
    compare.add_argument('results', metavar='RESULT', nargs='+',
                         help='result JSONs (train --output), or folders of '
                         'them')
    compare.add_argument('--baseline', metavar='MODEL',
                         help='the group tested against (default: the best '
                         'mean of the first metric)')
    compare.add_argument('--metrics', nargs='+', metavar='METRIC',
                         help='default: recall@20 and ndcg@20, those the '
                         'runs have')
    compare.add_argument('--split', choices=('test', 'valid'),
                         default='test', help='default: test')
    compare.add_argument('--plot', metavar='FILE.png',
                         help='draw the validation learning curves')
    compare.add_argument('--output', '-o', metavar='FILE',
                         help='write the comparison as JSON')
    compare.add_argument('--debug', action='store_true',
                         help='show Python tracebacks on errors')


def run_result_command(args: argparse.Namespace) -> int:
    r"""Runs the ``recommend`` or ``evaluate`` command :obj:`args`."""
    from diffkg_pyg.train import load_model

    if args.command == 'compare':
        return _compare(args)
    device = check_device(args.device)
    outputs = [args.output] + ([args.embeddings] if
                               args.command == 'recommend' else [])
    if not any(outputs) and args.command == 'recommend':
        raise ValueError('recommend: give --output FILE (the top-K lists) '
                         'or --embeddings FILE.npz')
    for flag, path in zip(('--output', '--embeddings'), outputs):
        if path:
            probe_file(path, flag)
    if args.command == 'recommend' and args.search == 'mips':
        from diffkg_pyg.nn.functional import check_faiss
        try:  # Before the model loads.
            check_faiss()
        except ImportError as error:
            raise ValueError(f'recommend --search mips: {error}') from None
    recommender = load_model(args.model, device)
    if args.command == 'recommend':
        return _recommend(args, recommender)
    return _evaluate(args, recommender)


def _recommend(args: argparse.Namespace, recommender) -> int:
    from diffkg_pyg.train.outputs import (
        users_of,
        write_embeddings,
        write_top_k,
    )
    if args.embeddings:
        write_embeddings(args.embeddings, recommender)
        print(f'{args.embeddings}: the embeddings of '
              f'{recommender.sizes.num_users} users and '
              f'{recommender.sizes.num_items} items')
    if args.output:
        users = users_of(recommender, args.users)
        k = min(args.k, recommender.sizes.num_items)
        rows = write_top_k(args.output, recommender, users, k,
                           not args.keep_seen, args.batch_size,
                           search=args.search)
        print(f'{args.output}: {rows} recommendations for {users.numel()} '
              f'users (top {k})')
    return 0


def _evaluate(args: argparse.Namespace, recommender) -> int:
    from diffkg_pyg.files import save_json
    from diffkg_pyg.train.outputs import evaluate_saved

    data = load_data(args, log=False)
    out = evaluate_saved(recommender, data, args.topk, args.batch_size,
                         args.metrics, args.eval_negatives,
                         args.eval_sampler)
    if out['same_dataset'] is False:
        sys.stderr.write(f'note: {args.data} is not the dataset '
                         f'{args.model} was trained on (another '
                         f'fingerprint: other files, split or flags), so '
                         f'its numbers are not those of that run\n')
    names = sorted(out['test'] or out['valid'],
                   key=lambda m: (m.split('@')[0], int(m.split('@')[1])))
    rows = [['split'] + names]
    for split in ('valid', 'test'):
        if out[split]:
            rows.append([split] + [f'{out[split][m]:.4f}' for m in names])
    print(format_table(rows))
    if args.output:
        save_json(args.output, {
            'model': recommender.recipe.name, 'model_file': args.model,
            'trained_on': recommender.dataset, **out})
    return 0


def _compare(args: argparse.Namespace) -> int:
    from diffkg_pyg.files import save_json
    from diffkg_pyg.train.compare import (
        compare_runs,
        format_comparison,
        group_runs,
        plot_curves,
        read_results,
    )

    for flag, path in (('--plot', args.plot), ('--output', args.output)):
        if path:
            probe_file(path, flag)
    groups = group_runs(read_results(args.results))
    present = {m for g in groups for r in g.runs.values()
               for m in r.get(args.split) or {}}
    metrics = args.metrics or [m for m in ('recall@20', 'ndcg@20')
                               if m in present]
    missing = [m for m in metrics if m not in present]
    if missing or not metrics:
        raise ValueError(f'--metrics: no run has '
                         f'{", ".join(missing) or "recall@20 or ndcg@20"} '
                         f'(in its {args.split} metrics)')
    out = compare_runs(groups, metrics, args.baseline, args.split)
    print(format_comparison(out))
    if args.plot:
        plot_curves(groups, args.plot, metrics[0])
    if args.output:
        save_json(args.output, out)
    return 0
