r"""The message-passing layers of the knowledge-graph recommenders."""
from diffkg_pyg.nn.conv.kg_attention import KGAttentionConv, KGEncoder
from diffkg_pyg.nn.conv.kgat_conv import KGATConv
from diffkg_pyg.nn.conv.kgcl_conv import KGCLConv
from diffkg_pyg.nn.conv.kgin_conv import KGINConv

__all__ = ['KGAttentionConv', 'KGEncoder', 'KGINConv', 'KGATConv',
           'KGCLConv']
