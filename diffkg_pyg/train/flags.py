r"""The command-line face of hyper-parameter declarations: the flags of a
:class:`~diffkg_pyg.train.HyperParameter` (its name, the authors'
spellings and aliases), the values given through them, and the tables of
``diffkg-pyg models NAME``."""
import argparse
from typing import Any, Dict, List, Sequence

from diffkg_pyg.data.prepare import TEST_SPLITS
from diffkg_pyg.hyperparameters import HyperParameter, parse_bool
from diffkg_pyg.train.preflight import count, finite_float, positive

__all__ = ['add_flags', 'given_values', 'format_table', 'format_space',
           'parameter_table', 'add_data_flags', 'add_evaluation_flags',
           'preparation_of',
           'load_data']


def add_flags(group, parameter: HyperParameter, prefix: str) -> None:
    r"""Adds the flag of :obj:`parameter` and of each of its aliases (their
    values land under :obj:`prefix:name:alias`)."""
    aliases = ''
    if parameter.aliases:
        aliases = ' (also ' + ', '.join(f'--{a}' for a in
                                        parameter.aliases) + ')'
    text = parameter.help_text + aliases
    # The canonical flag (shown), its snake-case spelling as the authors'
    # scripts write names (--mean_type, --batch_size), and the aliases in
    # both spellings (hidden):
    spellings = [(None, [parameter.flag], True)]
    if '_' in parameter.name:
        spellings.append((None, [f'--{parameter.name}'], False))
    for alias in parameter.aliases:
        spellings.append((alias, list(dict.fromkeys(
            [f'--{alias}', '--' + alias.replace('_', '-')])), False))
    for alias, flags, shown in spellings:
        kind = (parameter.type if alias is None else
                parameter.alias_type or parameter.type)
        kwargs: Dict[str, Any] = dict(
            dest=f'{prefix}:{parameter.name}:{alias or ""}',
            default=argparse.SUPPRESS,
            help=text if shown else argparse.SUPPRESS)
        if kind is bool:
            # `--norm`, `--norm 0` / `--norm=true` (the authors' scripts
            # pass 0/1) and `--no-norm`:
            kwargs.update(nargs='?', const=True, type=parse_bool,
                          metavar='BOOL')
            group.add_argument(*flags, **kwargs)
            group.add_argument(*['--no-' + flag[2:] for flag in flags],
                               dest=kwargs['dest'], action='store_const',
                               const=False, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)
            continue
        if kind is tuple:  # Parsed and checked by HyperParameter.check.
            kwargs.update(type=str, metavar='INTS')
        else:
            kwargs.update(type=kind, metavar=kind.__name__.upper())
            if alias is None and parameter.choices:
                kwargs.update(choices=parameter.choices, metavar=None)
        group.add_argument(*flags, **kwargs)


def given_values(args: argparse.Namespace, prefix: str,
           parameters: Sequence[HyperParameter]) -> Dict[str, Any]:
    r"""The values of :obj:`parameters` given on the command line, by
    canonical name (an alias's value converted)."""
    by_name = {p.name: p for p in parameters}
    out = {}
    for dest, value in sorted(vars(args).items()):
        if not dest.startswith(prefix + ':'):
            continue
        _, name, alias = dest.split(':')
        flag = f'--{alias or by_name[name].flag[2:]}'
        if alias:
            value = by_name[name].convert_alias(value)
        out[name] = by_name[name].check(value, where=f'{flag}: ')
    return out


def format_table(rows: List[List[str]]) -> str:
    r"""Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width in
                               zip(row, widths)).rstrip() for row in rows)


def format_space(space) -> str:
    r"""A search space in one cell: :obj:`log[0.0001, 0.01]`,
    :obj:`[1, 4] step 1` or :obj:`{a, b}`."""
    if space.choices is not None:
        return '{' + ', '.join(','.join(map(str, c)) if isinstance(c, tuple)
                               else str(c) for c in space.choices) + '}'
    step = f' step {space.step:g}' if space.step is not None else ''
    return f'{"log" if space.log else ""}[{space.low:g}, {space.high:g}]' + \
        step


def parameter_table(parameters: Sequence[HyperParameter],
                    spaces: Dict[str, Any]) -> str:
    r"""The table of :obj:`parameters` that ``diffkg-pyg models NAME``
    prints: flag, type, default, valid values, aliases, search space (from
    :obj:`spaces`, by name) and help."""
    rows = [['flag', 'type', 'default', 'valid', 'aliases', 'tune space',
             'help']]
    for p in parameters:
        space = spaces.get(p.name)
        valid = (str(p.range) if p.range is not None else
                 ' | '.join(map(str, p.choices)) if p.choices else '')
        rows.append([p.flag, p.type_name, repr(p.default), valid,
                     ' '.join(f'--{a}' for a in p.aliases),
                     '' if space is None else format_space(space), p.help])
    return format_table(rows)


def add_data_flags(parser: argparse.ArgumentParser, group=None) -> None:
    r"""The flags that choose, read and split a command's dataset (and
    ``--debug``; in :obj:`group` where given), and the preparation's
    flags (in a group of their own)."""
    out = parser if group is None else group
    out.add_argument(
        '--data-root', default='data',
        help='folder of named datasets (default: %(default)s)')
    out.add_argument(
        '--val-ratio', type=finite_float, default=0.1,
        help="fraction of every user's train items held out for "
        'validation (default: %(default)s)')
    out.add_argument('--split-seed', type=int, default=0,
                        help='seed of the test split and validation hold-out '
                        '(default: %(default)s)')
    out.add_argument('--layout', choices=('recbole', 'csv'),
                        default=None,
                        help="read DATA as RecBole's atomic files or CSV/TSV "
                        'tables with string ids (detected in a folder of '
                        'no other layout)')
    prepare = parser.add_argument_group(
        'preparation (RecBole, CSV, KGAT and authors\' folders; recorded in '
        'the results)')
    prepare.add_argument(
        '--split', choices=TEST_SPLITS, default=None,
        help="the test split: the dataset's own (default where it has "
        'one), a seeded per-user ratio (default otherwise), the latest '
        "--test-ratio of each user's or of all interactions by timestamp, "
        "or each user's latest interaction")
    prepare.add_argument('--test-ratio', type=finite_float, default=0.2,
                         help='test fraction of the ratio and temporal '
                         'splits (default: %(default)s)')
    prepare.add_argument('--min-rating', type=finite_float, default=None,
                         help='drop interactions rated under this')
    prepare.add_argument('--user-core', type=count, default=0, metavar='K',
                         help='k-core: drop users with fewer interactions, '
                         'repeatedly with --item-core (default: none)')
    prepare.add_argument('--item-core', type=count, default=0, metavar='K',
                         help='k-core: drop items with fewer interactions '
                         '(default: none)')
    prepare.add_argument('--entity-core', type=count, default=0, metavar='K',
                         help='drop KG entities (other than items) in fewer '
                         'triplets, repeatedly (default: none)')
    prepare.add_argument('--dedup', choices=('first', 'last'),
                         default='first',
                         help='a pair listed twice in a file keeps its first '
                         'or its latest row (default: %(default)s)')
    out.add_argument('--cache-dir', default=None,
                        help='where processed graphs are cached')
    out.add_argument('--kg-ablation', default=None,
                        metavar='remove|shuffle:F|drop:F',
                        help='KG-utility analysis: train on the knowledge '
                        'graph with every triplet removed, a fraction F of '
                        'tails shuffled, or a fraction F dropped (items keep '
                        'their ids; recorded in the results)')
    out.add_argument('--kg-ablation-seed', type=int, default=0,
                        help='seed of the ablation (default: %(default)s)')
    out.add_argument('--debug', action='store_true',
                        help='show Python tracebacks on errors')


def add_evaluation_flags(group) -> None:
    r"""The flags of the metrics, their cut-offs and the ranking mode
    (``train`` and ``evaluate``)."""
    from diffkg_pyg.evaluation import METRICS, SAMPLERS

    group.add_argument('--metrics', nargs='+', choices=METRICS,
                       default=['recall', 'ndcg'], metavar='METRIC',
                       help=f'validation and test metrics, of '
                       f'{", ".join(METRICS)} (recall and ndcg are always '
                       f'computed)')
    group.add_argument('--topk', nargs='+', type=positive,
                       default=[10, 20, 40], metavar='K',
                       help='metric cut-offs (default: 10 20 40; train '
                       'always computes 20: early stopping reads it)')
    group.add_argument('--eval-negatives', type=positive, default=None,
                       metavar='N', help='sampled ranking: each held-out '
                       'pair against N sampled negatives (NOT comparable '
                       'with the default full ranking; recorded)')
    group.add_argument('--eval-sampler', choices=SAMPLERS,
                       default='uniform', help='how those negatives are '
                       'drawn (default: %(default)s)')


def preparation_of(args: argparse.Namespace):
    r"""The :class:`~diffkg_pyg.data.Preparation` of the command line."""
    from diffkg_pyg.data import Preparation

    return Preparation(args.split, args.test_ratio, args.min_rating,
                       args.user_core, args.item_core, args.entity_core,
                       args.dedup)


def load_data(args: argparse.Namespace, log: bool = True,
              prepare: bool = True):
    r"""The dataset of the command line, prepared (unless not
    :obj:`prepare`) and ablated as asked."""
    from diffkg_pyg.data import ablate_kg, load_dataset

    data = load_dataset(args.data, args.data_root, args.val_ratio,
                        args.split_seed, args.cache_dir, log=log,
                        layout=args.layout,
                        test_ratio=args.test_ratio,
                        preparation=preparation_of(args) if prepare
                        else None)
    if args.kg_ablation:
        data = ablate_kg(data, args.kg_ablation, args.kg_ablation_seed)
    return data
