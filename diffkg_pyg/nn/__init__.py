from diffkg_pyg.nn.denoiser import MLPDenoiser, SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion, ImportanceStepSampler
from diffkg_pyg.nn.kg_attention import KGAttentionConv, KGEncoder
from diffkg_pyg.nn.models import (
    PRESETS,
    DiffKG,
    DiffRec,
    LDiffRec,
    TDiffRec,
)

__all__ = [
    'KGAttentionConv',
    'KGEncoder',
    'GaussianDiffusion',
    'SparseDenoiser',
    'MLPDenoiser',
    'ImportanceStepSampler',
    'DiffKG',
    'DiffRec',
    'TDiffRec',
    'LDiffRec',
    'PRESETS',
]
