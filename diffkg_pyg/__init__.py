r"""DiffKG (knowledge-graph diffusion for recommendation) for PyTorch
Geometric."""
from diffkg_pyg.nn.models import PRESETS, DiffKG

__version__ = '0.1.0'

__all__ = ['DiffKG', 'PRESETS', '__version__']
