from diffkg_pyg.train.recipes.diffkg import DiffKGRecipe
from diffkg_pyg.train.recipes.diffrec import (
    DIFFREC_PRESETS,
    LDIFFREC_PRESETS,
    LTDIFFREC_PRESETS,
    TDIFFREC_PRESETS,
    DiffRecRecipe,
    LDiffRecRecipe,
    LTDiffRecRecipe,
    TDiffRecRecipe,
    item_clusters,
)
from diffkg_pyg.train.recipes.kgat import KGAT_PRESETS, KGATRecipe
from diffkg_pyg.train.recipes.kgcl import KGCL_PRESETS, KGCLRecipe
from diffkg_pyg.train.recipes.kgin import KGIN_PRESETS, KGINRecipe, kgin_edges
from diffkg_pyg.train.recipes.lightgcn import LightGCNRecipe
from diffkg_pyg.train.recipes.mf import MFRecipe

__all__ = ['DiffKGRecipe', 'LightGCNRecipe', 'DiffRecRecipe',
           'TDiffRecRecipe', 'LDiffRecRecipe', 'DIFFREC_PRESETS',
           'LDIFFREC_PRESETS', 'TDIFFREC_PRESETS', 'LTDiffRecRecipe',
           'LTDIFFREC_PRESETS', 'item_clusters', 'MFRecipe', 'KGINRecipe',
           'KGIN_PRESETS', 'kgin_edges', 'KGATRecipe', 'KGAT_PRESETS',
           'KGCLRecipe', 'KGCL_PRESETS']
