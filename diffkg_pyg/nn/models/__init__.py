from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG
from diffkg_pyg.nn.models.diffrec import DiffRec, TDiffRec
from diffkg_pyg.nn.models.ldiffrec import LDiffRec

__all__ = ['DiffKG', 'PRESETS', 'DiffRec', 'TDiffRec', 'LDiffRec']
