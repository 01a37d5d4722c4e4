r"""The ``diffkg-pyg`` command line.

::

    diffkg-pyg                       # train DiffKG on the embedded data
    diffkg-pyg stats DATA [--json]
    diffkg-pyg train [DATA] [--model diffkg|lightgcn] [--preset NAME]
                     [--epochs N] [--seed S] [--keep-rate 0.5 ...]
                     [--output results.json]

``DATA`` is a dataset folder (KGAT or DiffKG authors' layout), the name of a
built-in dataset, or ``synthetic`` (the default).
"""
import argparse
import json
import os
import sys
from typing import List, Optional

__all__ = ['main']

MODELS = ['diffkg', 'lightgcn']
PRESET_NAMES = ['default', 'lastfm', 'mind', 'alibaba']

# DiffKG's hyper-parameters exposed as --kebab-case flags (the defaults are
# the model's, shown by --help; None means "the preset's or the default").
DIFFKG_FLAGS = [
    ('layer_num_kg', int, 'relation-aware attention hops'),
    ('mess_dropout', float, 'dropout after every attention hop'),
    ('res_lambda', float, 'residual weight of the KG encoder'),
    ('triplet_num', int, 'KG edges sampled per head for the original '
     'view (-1: all)'),
    ('ssl_reg', float, 'weight of the InfoNCE terms'),
    ('temp', float, 'InfoNCE temperature'),
    ('cl_pattern', int, '0: the denoised KG feeds the main view; 1: the '
     'sampled original KG does'),
    ('denoiser_hidden', int, 'hidden size of the denoiser'),
    ('time_channels', int, 'size of the diffusion-step embedding'),
    ('denoiser_dropout', float, 'input dropout of the denoiser'),
    ('steps', int, 'diffusion steps'),
    ('noise_scale', float, 'noise scale of the schedule'),
    ('noise_min', float, 'lower noise bound of the schedule'),
    ('noise_max', float, 'upper noise bound of the schedule'),
    ('sampling_steps', int, 'noise steps before the rebuild'),
    ('e_loss', float, 'weight of the CKGC loss'),
    ('rebuild_k', int, 'edges kept per head by the rebuild'),
    ('keep_rate', float, 'keep probability of every rebuilt edge'),
    ('num_negatives', int, 'sampled non-edges per KG edge in the '
     "denoiser's support"),
]
# Every DiffKG option whose "not given" value is None:
DIFFKG_OPTIONS = [flag[0] for flag in DIFFKG_FLAGS] + ['norm']


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--data-root', default='data',
        help='folder of named datasets (default: %(default)s)')
    parser.add_argument(
        '--val-ratio', type=float, default=0.1,
        help="fraction of every user's train items held out for "
        'validation (default: %(default)s)')
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the validation hold-out '
                        '(default: %(default)s)')
    parser.add_argument('--cache-dir', default=None,
                        help='where processed graphs are cached')
    parser.add_argument('--debug', action='store_true',
                        help='show Python tracebacks on errors')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='diffkg-pyg',
        description='DiffKG knowledge-graph diffusion for recommendation '
        '(PyTorch Geometric). Without a command, trains on the embedded '
        'synthetic dataset.')
    commands = parser.add_subparsers(dest='command')

    stats = commands.add_parser('stats', help='print dataset statistics')
    stats.add_argument('data', metavar='DATA',
                       help='dataset folder or built-in name')
    stats.add_argument('--json', action='store_true',
                       help='print one JSON object')
    _common(stats)

    train = commands.add_parser('train', help='train and evaluate a model')
    train.add_argument('data', metavar='DATA', nargs='?', default='synthetic',
                       help='dataset folder or built-in name '
                       '(default: %(default)s)')
    train.add_argument('--model', choices=MODELS, default='diffkg',
                       help='model to train (default: %(default)s)')
    train.add_argument('--preset', choices=PRESET_NAMES, default='default',
                       help="DiffKG: the authors' per-dataset settings "
                       '(default: %(default)s)')
    train.add_argument('--epochs', type=int, default=200,
                       help='epoch cap (default: %(default)s)')
    train.add_argument('--patience', type=int, default=10,
                       help='early-stopping patience in epochs '
                       '(default: %(default)s)')
    train.add_argument('--seed', type=int, default=0,
                       help='seed of initialisation and sampling '
                       '(default: %(default)s)')
    train.add_argument('--max-batches', type=int, default=None,
                       help='cap on the training batches per epoch')
    train.add_argument('--lr', type=float, default=1e-3,
                       help='learning rate (default: %(default)s)')
    train.add_argument('--batch-size', type=int, default=1024,
                       help='training batch size (default: %(default)s)')
    train.add_argument('--embedding-dim', type=int, default=64,
                       help='embedding size (default: %(default)s)')
    train.add_argument('--num-layers', type=int, default=2,
                       help='propagation layers (default: %(default)s)')
    train.add_argument('--reg', type=float, default=None,
                       help='L2 regularisation (default: 1e-7 for DiffKG '
                       'or its preset, 1e-4 for LightGCN)')
    train.add_argument('--threads', type=int, default=None,
                       help='CPU threads for torch')
    train.add_argument('--device', default='cpu',
                       help='torch device (default: %(default)s)')
    train.add_argument('--output', default=None,
                       help='write the results as one JSON object here')
    train.add_argument('--checkpoint-dir', default=None,
                       help='DiffKG: write last.pt and best.pt here')
    train.add_argument('--checkpoint-every', type=int, default=1,
                       help='epochs between last.pt checkpoints '
                       '(default: %(default)s)')
    train.add_argument('--resume', default=None, metavar='CHECKPOINT',
                       help='DiffKG: continue from this checkpoint, up to '
                       '--epochs in total (same data and hyper-parameters)')
    train.add_argument('--save-model', default=None, metavar='PATH',
                       help='DiffKG: save the best model for inference')
    diffkg = train.add_argument_group('DiffKG hyper-parameters (override '
                                      'the preset)')
    defaults = _diffkg_defaults()
    for name, kind, text in DIFFKG_FLAGS:
        diffkg.add_argument(f'--{name.replace("_", "-")}', type=kind,
                            default=None,
                            help=f'{text} (default: {defaults[name]})')
    diffkg.add_argument('--norm', action=argparse.BooleanOptionalAction,
                        default=None, help="L2-normalise the denoiser's "
                        'input rows (default: on)')
    diffkg.add_argument('--no-diffusion', dest='diffusion',
                        action='store_false',
                        help='ablation: no denoiser and no rebuild; the '
                        'sampled original KG feeds both views')
    diffkg.add_argument('--compile', action=argparse.BooleanOptionalAction,
                        default=True, help="torch.compile the denoiser's "
                        'hot path (default: on)')
    _common(train)
    return parser


def _diffkg_defaults():
    import inspect

    from diffkg_pyg.nn.models import DiffKG
    parameters = inspect.signature(DiffKG).parameters
    return {name: p.default for name, p in parameters.items()}


def _diffkg_hyperparameters(args: argparse.Namespace) -> dict:
    from diffkg_pyg.nn.models import PRESETS
    hyperparameters = dict(PRESETS[args.preset])
    for name in DIFFKG_OPTIONS:
        if getattr(args, name) is not None:
            hyperparameters[name] = getattr(args, name)
    if args.reg is not None:
        hyperparameters['reg'] = args.reg
    hyperparameters.update(embedding_dim=args.embedding_dim,
                           num_layers=args.num_layers,
                           use_compile=args.compile)
    return hyperparameters


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ValueError(f'--{name} must be >= 1 (got {value})')


def _train(args: argparse.Namespace) -> int:
    import torch

    from diffkg_pyg.data import load_dataset
    from diffkg_pyg.training import train_diffkg, train_lightgcn

    for name in ('epochs', 'patience', 'max_batches', 'batch_size',
                 'embedding_dim', 'threads', 'checkpoint_every'):
        _positive(name.replace('_', '-'), getattr(args, name))
    if args.model != 'diffkg':
        given = [f'--{name.replace("_", "-")}' for name in DIFFKG_OPTIONS
                 if getattr(args, name) is not None]
        if args.preset != 'default':
            given.insert(0, '--preset')
        given += [f'--{name.replace("_", "-")}' for name in
                  ('checkpoint_dir', 'resume', 'save_model')
                  if getattr(args, name) is not None]
        if not args.diffusion:
            given.append('--no-diffusion')
        if given:
            raise ValueError(f'{", ".join(given)} only apply to --model '
                             f'diffkg (got --model {args.model})')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data, args.data_root, args.val_ratio,
                        args.split_seed, args.cache_dir)
    common = dict(lr=args.lr, batch_size=args.batch_size,
                  epochs=args.epochs, patience=args.patience, seed=args.seed,
                  max_batches=args.max_batches,
                  device=torch.device(args.device))
    record = {'model': args.model, 'dataset': args.data, 'seed': args.seed}
    if args.model == 'diffkg':
        hyperparameters = _diffkg_hyperparameters(args)
        record.update(preset=args.preset, hyperparameters=hyperparameters,
                      diffusion=args.diffusion)
        result = train_diffkg(data, **common, **hyperparameters,
                              checkpoint_dir=args.checkpoint_dir,
                              checkpoint_every=args.checkpoint_every,
                              resume=args.resume, save_model=args.save_model,
                              diffusion=args.diffusion)
    else:
        result = train_lightgcn(
            data, embedding_dim=args.embedding_dim,
            num_layers=args.num_layers,
            lambda_reg=1e-4 if args.reg is None else args.reg, **common)
    print(f'{args.model} on {args.data}: best epoch {result.best_epoch} of '
          f'{result.epochs_run}, {result.seconds:.1f} s')
    for split in ('valid', 'test'):
        metrics = getattr(result, split)
        print(f'{split:5s} recall@20 {metrics["recall@20"]:.4f}  '
              f'ndcg@20 {metrics["ndcg@20"]:.4f}')
    if args.output:
        record.update(result.to_dict())
        directory = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(directory, exist_ok=True)
        temporary = f'{args.output}.tmp'
        with open(temporary, 'w') as f:
            json.dump(record, f, indent=2)
        os.replace(temporary, args.output)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from diffkg_pyg.data import format_statistics, load_dataset, statistics

    data = load_dataset(args.data, args.data_root, args.val_ratio,
                        args.split_seed, args.cache_dir, log=False)
    stats = statistics(data)
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_statistics(stats, str(args.data)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] not in ('stats', 'train', '-h', '--help'):
        argv = ['train'] + argv
    args = parser.parse_args(argv)
    from diffkg_pyg.training import NonFiniteLossError, TrainingInterrupted
    try:
        return _stats(args) if args.command == 'stats' else _train(args)
    except TrainingInterrupted as interrupt:
        print(f'diffkg-pyg: {interrupt}', file=sys.stderr)
        return 130
    except (ValueError, OSError, NonFiniteLossError) as error:
        if args.debug:  # Bad input or diverged training: one paragraph.
            raise
        print(f'diffkg-pyg: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
