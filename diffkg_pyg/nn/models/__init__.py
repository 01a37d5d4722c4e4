from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG
from diffkg_pyg.nn.models.diffkg_loop import DiffKGLoop
from diffkg_pyg.nn.models.diffrec import DiffRec, TDiffRec
from diffkg_pyg.nn.models.kgat import KGAT
from diffkg_pyg.nn.models.kgcl import KGCL
from diffkg_pyg.nn.models.kgin import KGIN
from diffkg_pyg.nn.models.ldiffrec import LDiffRec, LTDiffRec
from diffkg_pyg.nn.models.mf import MF

__all__ = ['DiffKG', 'DiffKGLoop', 'PRESETS', 'DiffRec', 'TDiffRec',
           'LDiffRec', 'LTDiffRec', 'MF', 'KGIN', 'KGAT',
           'KGCL']
