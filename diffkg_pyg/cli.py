r"""The ``diffkg-pyg`` command line.

::

    diffkg-pyg                       # train DiffKG on the embedded data
    diffkg-pyg models [NAME]         # the models; one's hyper-parameters
    diffkg-pyg stats DATA [--json]
    diffkg-pyg train [DATA] [--model NAME] [--config FILE.toml]
                     [--preset NAME] [--epochs N] [--seed S] ...
                     [--keep-rate 0.5 ...] [--output results.json]
    diffkg-pyg tune [DATA] [--model NAME] --trials N [--timeout S]
                    [--space FILE.toml] [--final-seeds K] [--output DIR]
                    [--storage URL] [the flags of train: fixed values]
    diffkg-pyg recommend MODEL [--users FILE|all] [--k 20]
                         [--output topk.tsv] [--embeddings emb.npz]
                         [--search exact|mips]
    diffkg-pyg evaluate MODEL DATA [--topk 10 20 40] [--output F.json]

``DATA`` is a dataset folder (KGAT, DiffKG authors', DiffRec, RecBole atomic
files or CSV), the name of a built-in dataset, or ``synthetic`` (the
default). The flags of a model come
from its recipe's declaration of hyper-parameters (with the authors' names
as aliases); a value is taken from the command line, else the config file,
else the preset, else the default. ``tune`` takes the flags of ``train``;
a hyper-parameter given a value there is fixed, the others with a search
space are searched (see :func:`diffkg_pyg.train.tuning.tune`). ``MODEL``
is a file written by ``train --save-model`` (see
:mod:`diffkg_pyg.commands`).
"""
import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from diffkg_pyg.commands import (
    RESULT_COMMANDS,
    add_result_commands,
    run_result_command,
)
from diffkg_pyg.hyperparameters import lookup, resolve
from diffkg_pyg.train.flags import (
    add_data_flags,
    add_evaluation_flags,
    add_flags,
    format_table,
    given_values,
    load_data,
    parameter_table,
)
from diffkg_pyg.train.hyperparameters import (
    TRAIN_SETTINGS,
    read_config,
    split_config,
)
from diffkg_pyg.train.preflight import (
    check_run_flags,
    describe,
    expected_runtime_error,
    finite_float,
    one_line_warnings,
)

__all__ = ['main']

PROG = 'diffkg-pyg'
COMMANDS = ('train', 'tune', 'models', 'stats') + RESULT_COMMANDS


class _Parser(argparse.ArgumentParser):
    # Bad arguments raise, so that main() prints one line, as for any other
    # bad input (argparse would print the whole usage first).
    def error(self, message: str):
        raise ValueError(message)


def build_train_parser(recipe, command: str = 'train'
                       ) -> argparse.ArgumentParser:
    r"""The parser of ``diffkg-pyg train`` (or ``tune``) for the model of
    :obj:`recipe` (a :class:`~diffkg_pyg.train.Recipe` class)."""
    from diffkg_pyg.train.registry import MODELS
    description = (
        'Trains and evaluates a model under the package protocol '
        '(validation early stopping, test of the best epoch).'
        if command == 'train' else
        'Searches hyper-parameters with Optuna, maximising validation '
        'Recall@20; every trial is a training run under the package '
        'protocol without the test set. The model flags below fix a value '
        '(not searched); `diffkg-pyg models NAME` shows the searched ones.')
    parser = _Parser(prog=f'{PROG} {command}', allow_abbrev=False,
                     description=description)
    parser.add_argument('data', metavar='DATA', nargs='?', default='synthetic',
                        help='dataset folder or built-in name '
                        '(default: %(default)s)')
    parser.add_argument('--model', choices=sorted(MODELS), default='diffkg',
                        help='model to train; its hyper-parameters are '
                        'listed below (default: %(default)s; see '
                        f'`{PROG} models`)')
    parser.add_argument('--config', metavar='FILE',
                        help='TOML file of training settings and '
                        'hyper-parameters (flags given here win)')
    presets = sorted(recipe.presets)
    parser.add_argument('--preset', choices=presets or None,
                        default=argparse.SUPPRESS,
                        help=f'named hyper-parameters of {recipe.name} '
                        f'({", ".join(presets) or "none"}), under the flags')
    settings = parser.add_argument_group('training settings')
    for parameter in recipe.training_settings():
        add_flags(settings, parameter, 'setting')
    run = parser.add_argument_group('running')
    run.add_argument('--threads', type=int, default=None,
                     help='CPU threads for torch')
    run.add_argument('--device', default='cpu',
                     help='torch device (default: %(default)s)')
    if command == 'tune':
        _tune_arguments(run)
    else:
        _run_arguments(run)
    add_data_flags(parser, run)
    group = parser.add_argument_group(
        f'{recipe.name} hyper-parameters (see `{PROG} models '
        f'{recipe.name}`)')
    for parameter in recipe.hyperparameters:
        add_flags(group, parameter, 'model')
    return parser


def _tune_arguments(run) -> None:
    from diffkg_pyg.train.tuning import PRUNERS, SAMPLERS
    run.add_argument('--trials', type=int, required=True,
                     help='finished trials the study should hold')
    run.add_argument('--timeout', type=finite_float, default=None,
                     metavar='SECONDS',
                     help="start no trial once the study's finished "
                     'trials have taken this many seconds in all (a running '
                     'trial finishes)')
    run.add_argument('--space', default=None, metavar='FILE',
                     help='TOML file of search ranges ([lr] low = 1e-4 '
                     'high = 1e-2 log = true; [dims] choices = [...]) or '
                     'fixed values, over the model\'s declared space')
    run.add_argument('--sampler', choices=SAMPLERS, default='tpe',
                     help='tpe: multivariate TPE, random for the first '
                     'max(3, trials/4) trials, seeded per study and trial; '
                     'random: uniform, trial k the same in every study of '
                     'the same space (default: %(default)s)')
    run.add_argument('--pruner', choices=PRUNERS, default='median',
                     help='median: stop a trial below the median of the '
                     'complete trials at the same epoch, from the 6th '
                     'complete trial, never before max(patience, 3 x '
                     'eval-every) epochs; none (default: %(default)s)')
    run.add_argument('--confirm-top', type=int, default=3, metavar='N',
                     help='train the N best trials again with '
                     '--confirm-seeds other seeds on validation; the best '
                     'mean wins (0: the best trial wins; default: '
                     '%(default)s)')
    run.add_argument('--confirm-seeds', type=int, default=3, metavar='K',
                     help='seeds of that confirmation (default: '
                     '%(default)s)')
    run.add_argument('--final-seeds', type=int, default=0, metavar='K',
                     help='retrain the winner with seeds 0..K-1 and report '
                     'its test metrics (default: %(default)s)')
    run.add_argument('--output', default=None, metavar='DIR',
                     help='folder of the study, trials, best.toml and plot '
                     '(default: tune-MODEL-DATASET)')
    run.add_argument('--storage', default=None, metavar='URL',
                     help='Optuna RDB URL, shared by parallel processes; '
                     'those given the same --output also split the '
                     'confirmation runs and final seeds (default: '
                     'sqlite:///DIR/study.db)')
    run.add_argument('--study-name', default=None,
                     help='(default: MODEL-DATASET)')
    run.add_argument('--heartbeat', type=finite_float, default=30.0,
                     metavar='SECONDS',
                     help="a trial whose process is silent for twice this "
                     'is retried (default: %(default)s)')


def _run_arguments(run) -> None:
    run.add_argument('--output', default=None,
                     help='write the results as one JSON object here')
    add_evaluation_flags(run)
    run.add_argument('--checkpoint-dir', default=None,
                     help='write last.pt and best.pt here')
    run.add_argument('--checkpoint-every', type=int, default=1,
                     help='epochs between last.pt checkpoints '
                     '(default: %(default)s)')
    run.add_argument('--resume', default=None, metavar='CHECKPOINT',
                     help='continue from this checkpoint, up to --epochs '
                     'in total (same data and hyper-parameters)')
    run.add_argument('--log-dir', default=None, metavar='DIR',
                     help='write TensorBoard event files (losses, validation '
                     'metrics, epoch times) here')
    run.add_argument('--save-model', default=None, metavar='PATH',
                     help='save the best model for inference (load it '
                     'with diffkg_pyg.load_model)')
    run.add_argument('--dist-timeout', type=finite_float, default=1800.0,
                     metavar='SECONDS',
                     help='under torchrun: seconds a process waits for the '
                     'others before failing (default: %(default)s)')
    run.add_argument('--no-divergence-guard', action='store_true',
                     help='keep training when a total loss grows 1e4-fold '
                     'in an epoch or 1e8-fold in the run (default: stop, '
                     'naming it, earlier checkpoints kept)')


def _unknown(unknown: List[str], model: str) -> ValueError:
    from diffkg_pyg.train.registry import MODELS, get_recipe
    flags = [token.split('=')[0] for token in unknown
             if token.startswith('--')]
    for flag in flags:
        key = flag[2:].replace('-', '_')
        keys = {key, key[3:]} if key.startswith('no_') else {key}
        others = [name for name in sorted(MODELS) if name != model and
                  keys & set(lookup(get_recipe(name).hyperparameters))]
        if others:
            return ValueError(f'{flag} is not a hyper-parameter of {model} '
                              f'(it is one of {", ".join(others)}; see '
                              f'`{PROG} models {model}`)')
    return ValueError(f'unrecognized arguments: {" ".join(unknown)}')


def _train(argv: List[str], command: str = 'train') -> int:
    from diffkg_pyg.process import retain_freed_memory
    from diffkg_pyg.train.registry import get_recipe

    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    first.add_argument('--model', default=None)
    first.add_argument('--config', default=None)
    first_args, _ = first.parse_known_args(argv)
    config = read_config(first_args.config) if first_args.config else {}
    name = first_args.model or config.get('model', 'diffkg')
    try:
        recipe_class = get_recipe(name)
    except KeyError as error:
        where = f'{first_args.config}: ' if 'model' in config and \
            not first_args.model else ''
        raise ValueError(where + error.args[0]) from None
    args, unknown = build_train_parser(recipe_class,
                                       command).parse_known_args(argv)
    if unknown:
        raise _unknown(unknown, name)
    config_settings, config_model = split_config(config, args.config,
                                                  recipe_class)
    preset = getattr(args, 'preset', config.get('preset'))
    model = {**config_model,
             **given_values(args, 'model', recipe_class.hyperparameters)}
    given = {**config_settings,
             **given_values(args, 'setting',
                            recipe_class.training_settings())}
    recipe = recipe_class(preset, **model)
    settings = resolve(TRAIN_SETTINGS, recipe.preset_settings, given)
    for key in ('checkpoint_every', 'trials'):
        value = getattr(args, key, None)
        if value is not None and value < 1:
            raise ValueError(f'--{key.replace("_", "-")} must be >= 1 (got '
                             f'{value})')
    check_run_flags(args)
    # On the CPU, steps reuse freed memory without page faults:
    retain_freed_memory(args.device)
    if command == 'tune':
        return _tune(args, recipe_class, preset, model, given)
    return _run(args, recipe, settings)


def _tune(args: argparse.Namespace, recipe_class, preset: Optional[str],
          model: Dict[str, Any], settings: Dict[str, Any]) -> int:
    import os.path as osp

    import torch

    from diffkg_pyg.distributed import launched_world_size
    from diffkg_pyg.train import TrainingInterrupted
    try:
        import optuna  # noqa: F401

        from diffkg_pyg.train import tuning
    except ImportError:
        raise ValueError("tune needs Optuna: pip install 'diffkg-pyg[tune]'"
                         ) from None
    for flag in ('final_seeds', 'confirm_top', 'confirm_seeds'):
        if getattr(args, flag) < 0:
            raise ValueError(f'--{flag.replace("_", "-")} must be >= 0 '
                             f'(got {getattr(args, flag)})')
    if args.timeout is not None and args.timeout <= 0:
        raise ValueError(f'--timeout must be > 0 (got {args.timeout})')
    spaces: Dict[str, Any] = {}
    if args.space:
        spaces, fixed = tuning.read_space(args.space, recipe_class)
        split = split_config(fixed, args.space, recipe_class)
        settings, model = {**split[0], **settings}, {**split[1], **model}
    if launched_world_size() > 1:
        raise ValueError('tune runs one process per trial; start it without '
                         'torchrun (several tune processes may share one '
                         'study through --storage)')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = osp.basename(osp.normpath(str(args.data)))
    output = args.output or f'tune-{recipe_class.name}-{dataset}'
    data = load_data(args)
    try:
        _run_tune(args, tuning, data, recipe_class, output, dataset, preset,
                  model, settings, spaces)
    except TrainingInterrupted:
        # A trial's epochs are not checkpointed: the study resumes.
        raise TrainingInterrupted(
            f'tune interrupted: the finished trials are in the study '
            f'({output}); run the same command again to continue it (the '
            f'interrupted trial is run again)', None) from None
    return 0


def _run_tune(args, tuning, data, recipe_class, output, dataset, preset,
              model, settings, spaces) -> None:
    tuning.tune(data, recipe_class, args.trials, output, dataset=str(
        args.data), preset=preset, hyperparameters=model, settings=settings,
        space=spaces, storage=args.storage,
        study_name=args.study_name or f'{recipe_class.name}-{dataset}',
        sampler=args.sampler, pruner=args.pruner, timeout=args.timeout,
        confirm_top=args.confirm_top, confirm_seeds=args.confirm_seeds,
        final_seeds=args.final_seeds, heartbeat=args.heartbeat,
        device=args.device)


def _run(args: argparse.Namespace, recipe, settings: Dict[str, Any]) -> int:
    import torch

    from diffkg_pyg.distributed import (
        get_rank,
        init_from_env,
        is_distributed,
    )
    from diffkg_pyg.files import save_json
    from diffkg_pyg.train import Trainer
    from diffkg_pyg.train.tensorboard import TensorBoardWriter

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Under torchrun: one process group, the device of this rank.
    device = init_from_env(args.device, args.dist_timeout)
    try:
        # Rank 0 first: it processes the dataset into the cache once, the
        # others read that cache.
        rank = get_rank()
        if rank != 0:
            torch.distributed.barrier()
        data = load_data(args, log=rank == 0)
        if rank == 0 and is_distributed():
            torch.distributed.barrier()
        trainer = Trainer.from_settings(
            recipe, data, settings, device=device,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every, ks=args.topk,
            metrics=args.metrics, eval_negatives=args.eval_negatives,
            eval_sampler=args.eval_sampler,
            **({'divergence_factor': None} if args.no_divergence_guard
               else {}))
        writer = TensorBoardWriter(args.log_dir) if args.log_dir else None
        result = trainer.fit(settings['epochs'], settings['patience'],
                             resume=args.resume, on_epoch=writer)
        if writer is not None:
            writer.close(result.test, result.best_epoch)
        record = trainer.result_record(result)
        if trainer.rank != 0:
            return 0
        # The result first: a failing saved model loses nothing else.
        if args.output:
            save_json(args.output, record)
        if args.save_model:
            trainer.save_model(args.save_model)
        processes = (f', {trainer.world_size} processes'
                     if trainer.world_size > 1 else '')
        print(f'{recipe.name} on {args.data}: best epoch '
              f'{result.best_epoch} of {result.epochs_run}, '
              f'{result.seconds:.1f} s{processes}')
        for split in ('valid', 'test'):
            metrics = getattr(result, split)
            print(f'{split:5s} recall@20 {metrics["recall@20"]:.4f}  '
                  f'ndcg@20 {metrics["ndcg@20"]:.4f}')
        return 0
    finally:
        if is_distributed():
            torch.distributed.destroy_process_group()


def _models(args: argparse.Namespace) -> int:
    from diffkg_pyg.train.registry import MODELS, get_recipe
    if args.name is None:
        print(format_table([[name, get_recipe(name).description]
                             for name in MODELS]))
        return 0
    try:
        recipe = get_recipe(args.name)
    except KeyError as error:
        raise ValueError(error.args[0]) from None

    spaces = {p.name: p.space for p in recipe.hyperparameters +
              recipe.training_settings()}
    print(f'{recipe.name}: {recipe.description}\n')
    print(parameter_table(recipe.hyperparameters, spaces))
    for preset, values in recipe.presets.items():
        shown = ', '.join(f'{k}={v!r}' for k, v in values.items())
        print(f'\npreset {preset}: {shown or "the defaults"}')
    print('\ntraining settings (every model):\n')
    print(parameter_table(recipe.training_settings(), spaces))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from diffkg_pyg.data import format_statistics, statistics
    from diffkg_pyg.data.prepare import format_preparation

    data = load_data(args, log=False)
    stats, record = statistics(data), getattr(data, 'preparation', None)
    before = None
    if record is not None:  # The effect: the folder as read, beside.
        before = statistics(load_data(args, log=False, prepare=False))
    if args.json:
        print(json.dumps(stats if record is None else {
            'as_read': before, 'prepared': stats, 'preparation': record}))
    else:
        print(format_statistics(stats, str(args.data), before))
        if record is not None:
            print(format_preparation(record))
    return 0


def build_parser() -> argparse.ArgumentParser:
    r"""The parser of the commands other than ``train`` (whose flags depend
    on the model; see :func:`build_train_parser`)."""
    parser = _Parser(
        prog=PROG, description='DiffKG and the recommenders compared with '
        'it (PyTorch Geometric). Without a command, trains DiffKG on the '
        'embedded synthetic dataset.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     parser_class=_Parser)
    commands.add_parser('train', add_help=False,
                        help=f'train and evaluate a model (`{PROG} train '
                        '--help` lists its flags)')
    commands.add_parser('tune', add_help=False,
                        help='search hyper-parameters with Optuna '
                        f'(`{PROG} tune --help`)')
    models = commands.add_parser('models', help='list the models, or the '
                                 "hyper-parameters of one")
    models.add_argument('name', metavar='NAME', nargs='?',
                        help='a model (omit to list them all)')
    models.add_argument('--debug', action='store_true',
                        help='show Python tracebacks on errors')
    stats = commands.add_parser('stats', help='print dataset statistics')
    stats.add_argument('data', metavar='DATA',
                       help='dataset folder or built-in name')
    stats.add_argument('--json', action='store_true',
                       help='print one JSON object')
    add_data_flags(stats)
    add_result_commands(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line; returns the exit status."""
    from diffkg_pyg.train import NonFiniteLossError, TrainingInterrupted
    one_line_warnings(PROG)

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in COMMANDS[2:] + ('-h', '--help'):
            args = build_parser().parse_args(argv)
            if args.command in RESULT_COMMANDS:
                return run_result_command(args)
            return _stats(args) if args.command == 'stats' else _models(args)
        if argv and argv[0] == 'tune':
            return _train(argv[1:], 'tune')
        # `diffkg-pyg [train] [DATA] [flags]` trains.
        return _train(argv[1:] if argv and argv[0] == 'train' else argv)
    except TrainingInterrupted as interrupt:
        # One write per line: the processes of a torchrun share stderr.
        sys.stderr.write(f'{PROG}: {interrupt}\n')
        return 130
    except KeyboardInterrupt:  # A second Ctrl-C (or one outside training).
        if '--debug' in argv:
            raise
        sys.stderr.write(f'{PROG}: stopped at once: the epoch in progress '
                         f'is lost; the checkpoints written before it are '
                         f'kept\n')
        return 130
    except (ValueError, OSError, NonFiniteLossError, OverflowError,
            MemoryError) as error:
        if '--debug' in argv:  # Else bad input or divergence: one line.
            raise
        sys.stderr.write(f'{PROG}: error: {describe(error)}\n')
        return 2
    except RuntimeError as error:
        if '--debug' in argv or not expected_runtime_error(error):
            raise
        sys.stderr.write(f'{PROG}: error: {describe(error)}\n')
        return 2


if __name__ == '__main__':
    sys.exit(main())
