from diffkg_pyg.nn.models.diffkg import PRESETS, DiffKG

__all__ = ['DiffKG', 'PRESETS']
