from diffkg_pyg.nn.denoiser import SparseDenoiser
from diffkg_pyg.nn.diffusion import GaussianDiffusion
from diffkg_pyg.nn.kg_attention import KGAttentionConv, KGEncoder

__all__ = [
    'KGAttentionConv',
    'KGEncoder',
    'GaussianDiffusion',
    'SparseDenoiser',
]
