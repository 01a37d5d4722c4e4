r"""DiffKG (knowledge-graph diffusion for recommendation) and the
recommenders compared with it, for PyTorch Geometric."""
from diffkg_pyg.nn.models import PRESETS, DiffKG, DiffRec, LDiffRec, TDiffRec
from diffkg_pyg.train import Recipe, Trainer, load_model
from diffkg_pyg.version import __version__

__all__ = ['DiffKG', 'DiffRec', 'TDiffRec', 'LDiffRec', 'PRESETS', 'Trainer',
           'Recipe', 'load_model', '__version__']
