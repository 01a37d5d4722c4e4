from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG
from diffkg_pyg.nn.models.diffrec import DIFFREC_PRESETS, DiffRec, TDiffRec
from diffkg_pyg.nn.models.ldiffrec import LDIFFREC_PRESETS, LDiffRec

__all__ = ['DiffKG', 'PRESETS', 'DiffRec', 'TDiffRec', 'LDiffRec',
           'DIFFREC_PRESETS', 'LDIFFREC_PRESETS']
