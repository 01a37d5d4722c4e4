r"""Hyper-parameter search under the package's protocol, with `Optuna
<https://optuna.org>`_ (the ``[tune]`` extra; imported only here).

Every trial is one :class:`~diffkg_pyg.train.Trainer` fit with validation
early stopping, on a copy of the data whose test interactions are removed,
so that nothing in a search can read them; its value is the best
validation Recall@20. A model's search space is declared with its
hyper-parameters (:attr:`HyperParameter.space
<diffkg_pyg.train.HyperParameter.space>` and
:attr:`Recipe.setting_spaces <diffkg_pyg.train.Recipe.setting_spaces>`),
where its command-line flags come from; a value given to :func:`tune`
fixes a hyper-parameter (it is not searched) and a :obj:`space` mapping
overrides or adds ranges.

The study lives in a relational database (a SQLite file by default), so
that a killed search resumes where it stopped and several processes given
the same storage and study name share one search:

* the process that creates the study writes its settings (model,
  space, fixed values) and its first trial; processes that find it compare
  their settings with those, and refuse to join a study of other ones;
* finished trials (complete, pruned, or failed with an error such as a
  diverged loss) count towards :obj:`n_trials`; a process starts trials
  until the study holds that many (processes that start their last trials
  together may each add one);
* a trial whose process died stops sending its heartbeat; once it is
  :obj:`2 * heartbeat` seconds old it is marked failed, and its parameters
  are run again as a new trial (Optuna's
  :class:`~optuna.storages.RetryFailedTrialCallback`);
* processes given the same :obj:`output` folder also split the runs after
  the search (confirmation runs and final seeds): each run has its own
  JSON file and lock file, a process trains a run whose lock it holds,
  reads back the finished ones and waits for those of the others, and
  takes over the run of a process that died
  (:func:`~diffkg_pyg.train.tuning.shared.run_shared`). Each run is
  seeded, so who trains it does not change its result.

The first trial of a new study is the default configuration (the
defaults, the preset and the fixed values; a default outside its space is
drawn instead), so that a search does not end below it on validation.

**Sampler** (:mod:`~diffkg_pyg.train.tuning.search`): multivariate TPE
whose first :math:`\max(3, \lceil n/4 \rceil)` trials of :math:`n` are
random; trial :math:`k` draws with the seed (a hash of the run's seed and
the study's name) :math:`+ k`, so a study run in one process is
reproducible, different studies explore differently, parallel processes
draw apart and a resumed study continues its own sequence. ``'random'``
draws uniformly with a seed that depends on the run's seed only, plus
:math:`k`: trial :math:`k` draws the same values in every study of the
same space and seed (common random numbers, to compare models draw for
draw).

**Pruner**: Optuna's median pruner, which compares a trial's best
validation metric so far with the median of the complete trials at the
same epoch, from the sixth complete trial on, and never before the epoch
:math:`\max(\text{patience}, 3 \cdot \text{eval\_every})`: no trial is
cut before early stopping could have stopped it, nor on fewer than three
validations. (A Hyperband pruner would compare trials at fixed budgets
that early stopping already decides.)

**Confirmation before test**: the :obj:`confirm_top` best trials are
trained again with :obj:`confirm_seeds` other seeds, on validation; the
best mean wins, and only the winner is tested (:obj:`final_seeds`).

The study's user attributes record how it ran: the model, dataset,
space, fixed values, sampler and pruner (compared when a process joins),
and the rules of the sampler and pruner, the budget and the package's
version and commit (written by the process that created it).
"""
import copy
import os
import os.path as osp
from typing import Any, Callable, Mapping, Optional

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from diffkg_pyg.data.graph import USER_ITEM
from diffkg_pyg.hyperparameters import Space, resolve
from diffkg_pyg.train.hyperparameters import TRAIN_SETTINGS
from diffkg_pyg.train.registry import get_recipe
from diffkg_pyg.train.results import code_record
from diffkg_pyg.train.tuning.confirmation import confirm
from diffkg_pyg.train.tuning.objective import Objective
from diffkg_pyg.train.tuning.report import (
    TuneResult,
    finish,
    jsonable,
    write_config,
)
from diffkg_pyg.train.tuning.space import (
    canonical_names,
    read_space,
    search_space,
)
from diffkg_pyg.train.tuning.study import (
    METRIC,
    PRUNERS,
    SAMPLERS,
    claim_output,
    open_study,
    run_trials,
    wait_for_running,
)

__all__ = ['search_space', 'read_space', 'tune', 'TuneResult',
           'write_config', 'without_test', 'PRUNERS', 'SAMPLERS']


def without_test(data: HeteroData) -> HeteroData:
    r"""A shallow copy of :obj:`data` without test interactions (what a
    search trains and validates on)."""
    out = copy.copy(data)
    store = out[USER_ITEM]
    store.test_edge_index = store.test_edge_index.new_empty((2, 0))
    return out


def tune(data: HeteroData, model: Any, n_trials: int, output: str, *,
         dataset: str = 'data', preset: Optional[str] = None,
         hyperparameters: Optional[Mapping[str, Any]] = None,
         settings: Optional[Mapping[str, Any]] = None,
         space: Optional[Mapping[str, Space]] = None,
         storage: Optional[str] = None, study_name: Optional[str] = None,
         sampler: str = 'tpe', pruner: Any = 'median',
         timeout: Optional[float] = None, confirm_top: int = 3,
         confirm_seeds: int = 3, final_seeds: int = 0,
         heartbeat: float = 30.0,
         device: Optional[torch.device] = None,
         log: Optional[Callable[[str], None]] = None) -> TuneResult:
    r"""Searches the hyper-parameters of :obj:`model` on :obj:`data`,
    maximising validation Recall@20 (see the module's description).

    Writes into :obj:`output`: :obj:`study.json`, which ties the folder to
    the study (a folder of another study, or whose runs the storage does
    not hold, is refused), the study (:obj:`study.db`, unless
    :obj:`storage` says otherwise), one result JSON per trial
    (:obj:`trials/trial-00007.json`; pruned and failed trials too),
    :obj:`best.toml` (what ``diffkg-pyg train --config`` takes), the plot
    :obj:`study.png` (with matplotlib), and with :obj:`final_seeds`, the
    retrained best configuration's results
    (:obj:`final/trial-00007-seed-0.json`, ..., keyed by the winning trial)
    and their summary :obj:`final.json`. A run's file is read back only
    when it holds that run (study, trial, seed, configuration). Before
    choosing the winner, it waits for the trials other processes are
    running, so that processes sharing a study agree on it.

    Args:
        data (HeteroData): The dataset graph (with its test interactions;
            the search never sees them).
        model (str or Recipe class): The registered model.
        n_trials (int): Finished trials the study should hold.
        output (str): The output folder.
        dataset (str, optional): The dataset's name in the records.
            (default: :obj:`'data'`)
        preset (str, optional): The model's preset under the search.
            (default: :obj:`None`)
        hyperparameters (dict, optional): Fixed hyper-parameters (names or
            aliases; not searched). (default: :obj:`None`)
        settings (dict, optional): Fixed training settings: the epoch cap
            and patience of every trial, its seed, ... (default:
            :obj:`None`: :data:`TRAIN_SETTINGS` defaults)
        space (dict, optional): Name or alias -> :class:`Space`, overriding
            or adding to the model's declared space. (default: :obj:`None`)
        storage (str, optional): An Optuna RDB URL. (default: the SQLite
            file :obj:`output/study.db`)
        study_name (str, optional): (default: :obj:`'<model>-<dataset>'`)
        sampler (str, optional): :obj:`'tpe'` (multivariate TPE, its
            random start a quarter of the trials, at least 3) or
            :obj:`'random'` (common random numbers: trial :math:`k` draws
            the same values in every study of the same space); see
            :func:`~diffkg_pyg.train.tuning.search.make_sampler`.
            (default: :obj:`'tpe'`)
        pruner (str or optuna.pruners.BasePruner, optional):
            :obj:`'median'` (Optuna's median pruner on the validation metric
            at the same epoch, from the sixth complete trial on and never
            before the early-stopping patience and the third validation),
            :obj:`'none'`, or a pruner. (default: :obj:`'median'`)
        timeout (float, optional): No trial starts once the study's
            finished trials have taken this many seconds in all (their
            durations summed, over restarts and parallel processes, so
            that a resumed study keeps its budget; a running trial
            finishes). (default: :obj:`None`)
        confirm_top (int, optional): After the search, the best
            :obj:`confirm_top` trials are trained again with
            :obj:`confirm_seeds` other seeds on validation; the best mean
            wins (:obj:`0`: the best trial wins). (default: :obj:`3`)
        confirm_seeds (int, optional): Seeds of that confirmation.
            (default: :obj:`3`)
        final_seeds (int, optional): Retrain the winner with seeds
            :obj:`0, ..., final_seeds - 1` and test it.
            (default: :obj:`0`)
        heartbeat (float, optional): Seconds between a trial's heartbeats;
            a trial silent for twice that is taken as dead and retried.
            (default: :obj:`30.0`)
        device (torch.device, optional): Where to train. (default: CPU)
        log (callable, optional): Receives one line per trial.
            (default: :func:`tqdm.write`)
    """
    from diffkg_pyg.train.tuning import search

    recipe_class = get_recipe(model) if isinstance(model, str) else model
    log = log or tqdm.write
    if n_trials < 1:
        raise ValueError(f'n_trials must be >= 1 (got {n_trials})')
    for name, value in (('final_seeds', final_seeds),
                        ('confirm_top', confirm_top),
                        ('confirm_seeds', confirm_seeds)):
        if value < 0:
            raise ValueError(f'{name} must be >= 0 (got {value})')
    hyperparameters = dict(hyperparameters or {})
    settings = dict(settings or {})
    names = canonical_names(recipe_class)
    for key in settings:
        if key not in names or not names[key][1]:
            raise ValueError(f'unknown training setting {key!r}')
    spaces = search_space(recipe_class, [*hyperparameters, *settings],
                          space)
    if not spaces:
        raise ValueError(f'nothing to search: every hyper-parameter of '
                         f'{recipe_class.name} with a space is fixed')
    base = recipe_class(preset, **hyperparameters)  # Bad values fail here.
    # The default configuration (where it lies in the space) is the first
    # trial, so a search never ends below it on validation.
    defaults = {**resolve(TRAIN_SETTINGS, base.preset_settings, settings),
                **base.hparams}
    seed = defaults['seed']
    warmup = search.pruning_warmup(defaults['patience'],
                                   defaults['eval_every'])
    os.makedirs(osp.join(output, 'trials'), exist_ok=True)
    storage = storage or 'sqlite:///' + osp.abspath(osp.join(output,
                                                             'study.db'))
    study_name = study_name or f'{recipe_class.name}-{dataset}'
    claim_output(output, study_name, storage)
    attributes = {
        'model': recipe_class.name, 'dataset': dataset, 'preset': preset,
        'space': {k: s.to_dict() for k, (_, s) in spaces.items()},
        'fixed': jsonable({**hyperparameters, **settings}),
        'metric': f'valid {METRIC}',
        'sampler': sampler if isinstance(sampler, str) else repr(sampler),
        'pruner': pruner if isinstance(pruner, str) else repr(pruner)}
    notes = {
        'sampler_rule': (
            f'multivariate TPE, n_startup_trials = max(3, ceil(n_trials / '
            f'4)) = {search.startup_trials(n_trials)}, trial k seeded with '
            f'{search.study_seed(seed, study_name)} + k' if sampler == 'tpe'
            else f'uniform, trial k seeded with '
            f"{search.study_seed(seed, 'random')} + k"),
        'pruner_rule': (
            f'median of the complete trials at the same epoch, from the '
            f'6th complete trial and epoch {warmup} on (max(patience, 3 x '
            f'eval_every))' if pruner == 'median' else str(pruner)),
        'budget': {'n_trials': n_trials, 'timeout': timeout,
                   'confirm_top': confirm_top,
                   'confirm_seeds': confirm_seeds},
        **code_record()}
    study = open_study(
        storage, study_name,
        search.make_sampler(sampler, seed, study_name, n_trials),
        search.make_pruner(pruner, warmup), heartbeat, attributes,
        {name: space.encode(defaults[name])
         for name, (_, space) in spaces.items() if defaults[name] in space},
        notes=notes)
    search_data = without_test(data)
    objective = Objective(recipe_class, search_data, spaces, output,
                          preset, hyperparameters, settings, device)
    run_trials(study, objective, n_trials, timeout, log)
    wait_for_running(study, poll=min(5.0, heartbeat), log=log)
    confirmation = None
    if confirm_top and confirm_seeds:
        confirmation = confirm(study, search_data, recipe_class, output,
                               confirm_top, confirm_seeds, seed, device,
                               log)
    return finish(study, storage, output, dataset, data, recipe_class,
                  final_seeds, device, log, confirmation)
