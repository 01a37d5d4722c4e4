from diffkg_pyg.nn.conv import (
    KGATConv,
    KGAttentionConv,
    KGCLConv,
    KGEncoder,
    KGINConv,
)
from diffkg_pyg.nn.denoiser import MLPDenoiser, SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion, ImportanceStepSampler
from diffkg_pyg.nn.models import (
    KGAT,
    KGCL,
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
    'KGATConv',
    'KGCLConv',
    'GaussianDiffusion',
    'SparseDenoiser',
    'MLPDenoiser',
    'ImportanceStepSampler',
    'DiffKG',
    'DiffRec',
    'TDiffRec',
    'LDiffRec',
    'KGIN',
    'KGAT',
    'KGCL',
    'PRESETS',
]
