r"""KG-utility analysis: the same dataset with its knowledge graph removed,
partly dropped, or partly shuffled, so that what a KG model gains from the
knowledge graph can be measured (the question of "Does Knowledge Graph
Really Matter for Recommender Systems?", Zhang et al., TOIS 2025)."""
import copy
from typing import Tuple

import torch
from torch_geometric.data import HeteroData

from diffkg_pyg.data.graph import (
    KG,
    build_knowledge_graph,
    has_kg,
    kg_triplets,
    set_knowledge_graph,
)

__all__ = ['ABLATIONS', 'parse_kg_ablation', 'ablate_kg']

#: The ablations: every triplet removed, a fraction shuffled, a fraction
#: dropped.
ABLATIONS = ('remove', 'shuffle', 'drop')


def parse_kg_ablation(text: str) -> Tuple[str, float]:
    r""":obj:`'remove'`, :obj:`'shuffle:F'` or :obj:`'drop:F'` as
    :obj:`(mode, F)` (:obj:`F` in :obj:`[0, 1]`; 1 for :obj:`remove`)."""
    mode, _, fraction = str(text).partition(':')
    if mode not in ABLATIONS or (mode == 'remove') != (fraction == ''):
        raise ValueError(f'a KG ablation is remove, shuffle:F or drop:F '
                         f'with F in [0, 1] (got {text!r})')
    if mode == 'remove':
        return mode, 1.0
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f'the fraction of the KG ablation {text!r} must '
                         f'lie in [0, 1]')
    return mode, value


def ablate_kg(data: HeteroData, ablation: str, seed: int = 0) -> HeteroData:
    r"""A copy of :obj:`data` whose knowledge graph is ablated; the
    interactions, the items' ids and the entity count are unchanged.

    The triplets are the KG's unique input triplets
    (:func:`~diffkg_pyg.data.kg_triplets`). :obj:`'remove'` leaves no
    triplet; :obj:`'drop:F'` drops a fraction :obj:`F` of them
    (:math:`\lfloor F n + 1/2 \rfloor`, chosen at random);
    :obj:`'shuffle:F'` replaces the tail of such a fraction by an entity
    drawn uniformly. The inverse pairs are then added again
    (:func:`~diffkg_pyg.data.build_knowledge_graph`). The copy
    records :obj:`data.kg_ablation` and :obj:`data.kg_ablation_seed`, which
    result files record.

    Args:
        data (HeteroData): A dataset graph with a knowledge graph.
        ablation (str): :obj:`'remove'`, :obj:`'shuffle:F'` or
            :obj:`'drop:F'`.
        seed (int, optional): The seed of the random choices.
            (default: :obj:`0`)
    """
    mode, fraction = parse_kg_ablation(ablation)
    if not has_kg(data):
        raise ValueError('the dataset has no knowledge graph to ablate')
    store = data[KG]
    num_entities = int(data['entity'].num_nodes)
    head, relation, tail = kg_triplets(data).clone()
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(relation.numel(), generator=gen)[
        :int(fraction * relation.numel() + 0.5)]
    if mode == 'shuffle':
        tail[chosen] = torch.randint(num_entities, (chosen.numel(), ),
                                     generator=gen)
    else:  # drop, remove
        keep = torch.ones(relation.numel(), dtype=torch.bool)
        keep[chosen] = False
        head, tail, relation = head[keep], tail[keep], relation[keep]
    out = copy.copy(data)
    set_knowledge_graph(out[KG], None if relation.numel() == 0 else
                        build_knowledge_graph(head.numpy(), relation.numpy(),
                                              tail.numpy(),
                                              num_items=num_entities),
                        num_relations=int(store.num_relations))
    out.kg_ablation = f'{mode}:{fraction:g}' if mode != 'remove' else mode
    out.kg_ablation_seed = seed
    return out
