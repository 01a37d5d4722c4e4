from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG
from diffkg_pyg.nn.models.diffrec import DIFFREC_PRESETS, DiffRec, TDiffRec

__all__ = ['DiffKG', 'PRESETS', 'DiffRec', 'TDiffRec', 'DIFFREC_PRESETS']
