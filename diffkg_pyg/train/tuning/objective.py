r"""One trial of a search: a training run under the package protocol on
the data without its test interactions, its value the best validation
Recall@20, its validation curve reported to the pruner, its record written
whatever its end."""
import os.path as osp
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.files import save_json
from diffkg_pyg.hyperparameters import HyperParameter, Space, resolve
from diffkg_pyg.train.hyperparameters import TRAIN_SETTINGS
from diffkg_pyg.train.recipe import Recipe
from diffkg_pyg.train.results import NonFiniteLossError, code_record
from diffkg_pyg.train.trainer import Trainer
from diffkg_pyg.train.tuning.report import jsonable
from diffkg_pyg.train.tuning.space import canonical_names
from diffkg_pyg.train.tuning.study import CONFIG, ERROR, METRIC

__all__ = ['Objective']


class Objective:
    r"""The objective of a study: called with an Optuna trial, draws its
    values from :obj:`spaces`, trains and returns the best validation
    Recall@20; writes :obj:`output/trials/trial-NNNNN.json` (complete,
    pruned or failed).

    Args:
        recipe_class (type): The model's recipe.
        data (HeteroData): The search data (without test interactions).
        spaces (dict): Name -> :obj:`(parameter, space)` of the searched.
        output (str): The study's folder.
        preset (str, optional): The model's preset.
        hyperparameters (dict): Fixed hyper-parameters.
        settings (dict): Fixed training settings.
        device (torch.device, optional): Where to train.
    """
    def __init__(self, recipe_class: Type[Recipe], data: HeteroData,
                 spaces: Mapping[str, Tuple[HyperParameter, Space]],
                 output: str, preset: Optional[str],
                 hyperparameters: Mapping[str, Any],
                 settings: Mapping[str, Any],
                 device: Optional[torch.device]) -> None:
        self.recipe_class = recipe_class
        self.data = data
        self.spaces = spaces
        self.output = output
        self.preset = preset
        self.hyperparameters = dict(hyperparameters)
        self.settings = dict(settings)
        self.device = device
        self.names = canonical_names(recipe_class)

    def _split(self, values: Mapping[str, Any], settings: bool
               ) -> Dict[str, Any]:
        return {k: v for k, v in values.items()
                if self.names[k][1] == settings}

    def __call__(self, trial) -> float:
        import optuna

        values = {name: space.suggest(trial, parameter)
                  for name, (parameter, space) in self.spaces.items()}
        curve: List[Dict[str, float]] = []
        record: Dict[str, Any] = {'trial': trial.number,
                                  'params': jsonable(values),
                                  'code': code_record()}
        path = osp.join(self.output, 'trials',
                        f'trial-{trial.number:05d}.json')
        started = time.perf_counter()

        def report(epoch: int, valid: Dict[str, float]) -> None:
            curve.append({'epoch': epoch, **valid})
            trial.report(valid[METRIC], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f'pruned after epoch {epoch}')

        try:
            recipe = self.recipe_class(self.preset, **self.hyperparameters,
                                       **self._split(values, False))
            run = resolve(TRAIN_SETTINGS, recipe.preset_settings,
                          self.settings, self._split(values, True))
            trial.set_user_attr(CONFIG, jsonable(
                {'model': recipe.name, **run, **recipe.hparams}))
            trainer = Trainer.from_settings(recipe, self.data, run,
                                            device=self.device,
                                            log=lambda line: None,
                                            interrupt_checkpoint=False)
            result = trainer.fit(run['epochs'], run['patience'], test=False,
                                 on_validation=report)
        except optuna.TrialPruned:
            save_json(path, {**record, 'state': 'pruned', 'curve': curve,
                             'seconds': time.perf_counter() - started,
                             'config': trial.user_attrs.get(CONFIG)})
            raise
        except (ValueError, NonFiniteLossError) as error:
            trial.set_user_attr(ERROR, str(error))
            save_json(path, {**record, 'state': 'failed',
                             'error': str(error), 'curve': curve,
                             'seconds': time.perf_counter() - started})
            raise
        save_json(path, {**record, 'state': 'complete',
                         **trainer.result_record(result)})
        return result.valid[METRIC]
