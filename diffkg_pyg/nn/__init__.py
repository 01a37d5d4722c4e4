from diffkg_pyg.nn.denoiser import SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion
from diffkg_pyg.nn.kg_attention import KGAttentionConv, KGEncoder
from diffkg_pyg.nn.models import PRESETS, DiffKG

__all__ = [
    'KGAttentionConv',
    'KGEncoder',
    'GaussianDiffusion',
    'SparseDenoiser',
    'DiffKG',
    'PRESETS',
]
