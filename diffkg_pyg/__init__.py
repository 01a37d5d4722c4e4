r"""DiffKG (knowledge-graph diffusion for recommendation) for PyTorch
Geometric."""
__version__ = '0.1.0'
