from diffkg_pyg.nn.conv import KGAttentionConv, KGEncoder, KGINConv
from diffkg_pyg.nn.denoiser import MLPDenoiser, SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion, ImportanceStepSampler
from diffkg_pyg.nn.models import (
    KGIN,
    PRESETS,
    DiffKG,
    DiffRec,
    LDiffRec,
    TDiffRec,
)

__all__ = [
    'KGAttentionConv',
    'KGEncoder',
    'KGINConv',
    'GaussianDiffusion',
    'SparseDenoiser',
    'MLPDenoiser',
    'ImportanceStepSampler',
    'DiffKG',
    'DiffRec',
    'TDiffRec',
    'LDiffRec',
    'KGIN',
    'PRESETS',
]
