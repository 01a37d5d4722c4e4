r"""DiffKG beside PyG's LightGCN, each trained in a plain PyTorch Geometric
loop on a graph built here: users, items and a knowledge graph whose
entities are linked to the items under their own ids, split by
:class:`~torch_geometric.transforms.RandomLinkSplit` and converted by
:func:`diffkg_pyg.data.from_pyg`. The trained DiffKG is then saved, loaded
back and recommends the same items. (The docs' "use in your own loop"
guide is this file.)

    python examples/pyg_loop.py --epochs 10
"""
import argparse

import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData
from torch_geometric.nn import LightGCN

from diffkg_pyg import DiffKG, load_model
from diffkg_pyg.data import RunGraph, from_pyg
from diffkg_pyg.nn.models import DiffKGLoop
from diffkg_pyg.train import Sizes, get_recipe, save_model


def make_graph(num_users=300, num_items=200, num_entities=400,
               num_relations=5, seed=0) -> HeteroData:
    r"""A HeteroData as a PyG user has one: items link to entities under
    other ids (an ``('item', 'is', 'entity')`` edge), entities carry typed
    relations to 20 attribute entities, and every user draws 70 % of their
    items among those of one attribute."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['entity'].num_nodes = num_entities
    entity_of_item = torch.randperm(num_entities, generator=gen)[:num_items]
    data['item', 'is', 'entity'].edge_index = torch.stack(
        [torch.arange(num_items), entity_of_item])
    attribute = torch.randperm(num_items, generator=gen) % 20
    is_attribute = torch.ones(num_entities, dtype=torch.bool)
    is_attribute[entity_of_item] = False
    attribute_entity = torch.nonzero(is_attribute).view(-1)[:20]
    kg = data['entity', 'relation', 'entity']
    kg.edge_index = torch.stack([entity_of_item,
                                 attribute_entity[attribute]])
    kg.edge_type = attribute % num_relations
    taste = torch.randint(20, (num_users, ), generator=gen)
    user = torch.arange(num_users).repeat_interleave(12)
    group = attribute.argsort()  # The items of attribute a: a * 10 + 0..9.
    item = group[taste[user] * (num_items // 20) + torch.randint(
        num_items // 20, user.shape, generator=gen)]
    noise = torch.rand(user.numel(), generator=gen) < 0.3
    item[noise] = torch.randint(num_items, (int(noise.sum()), ),
                                generator=gen)
    key = torch.unique(user * num_items + item)
    data['user', 'rates', 'item'].edge_index = torch.stack(
        [key // num_items, key % num_items])
    return data


def bpr_batches(train, num_items, batch_size=256):
    r"""One epoch of (user, positive item, random item) batches."""
    for index in torch.randperm(train.size(1)).split(batch_size):
        user, pos = train[:, index]
        yield user, pos, torch.randint(num_items, user.shape)


def recall_at_20(items, test, users):
    r"""Mean over :obj:`users` of the share of their test items among
    their 20 recommended :obj:`items`."""
    hits = [len(set(row.tolist()) & set(test[1][test[0] == u].tolist())) /
            max(int((test[0] == u).sum()), 1) for u, row in zip(users, items)]
    return sum(hits) / len(hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--output', default='diffkg-pyg-loop.pt')
    args = parser.parse_args()
    torch.manual_seed(0)
    split = T.RandomLinkSplit(num_val=0.1, num_test=0.2, edge_types=[
        ('user', 'rates', 'item')], add_negative_train_samples=False)
    data = from_pyg(*split(make_graph()), item_entity=('item', 'is',
                                                       'entity'))
    train = data['user', 'interacts', 'item'].edge_index
    test = data['user', 'interacts', 'item'].test_edge_index
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    users = torch.unique(test[0])

    # DiffKG: the three phases of an epoch, by hand.
    hparams = dict(embedding_dim=32, denoiser_hidden_channels=64,
                   use_compile=False)
    model = DiffKG.from_data(data, **hparams)
    loop = DiffKGLoop(model, RunGraph.from_data(data))  # Samples the KG.
    optimizer = model.configure_optimizers(lr=1e-2)
    for _ in range(args.epochs):
        model.train()
        for heads in loop.shuffled_kg_heads().split(256):  # 1: denoiser
            optimizer.zero_grad()
            loop.denoising_loss(heads)[0].backward()
            optimizer.step()
        loop.rebuild()  # 2: the denoised KG
        for user, pos, neg in bpr_batches(train, num_items):  # 3: BPR
            optimizer.zero_grad()
            loss, _ = loop.recommendation_loss(user, pos, neg)
            loss.backward()
            optimizer.step()
    items, _ = loop.recommend(users, k=20)
    print(f'DiffKG   test recall@20 {recall_at_20(items, test, users):.4f}')

    # PyG's LightGCN, the same way (its own example's loop).
    lightgcn = LightGCN(num_users + num_items, embedding_dim=32, num_layers=2)
    adam = torch.optim.Adam(lightgcn.parameters(), lr=1e-2)
    graph = torch.stack([train[0], train[1] + num_users])
    graph = torch.cat([graph, graph.flip(0)], dim=1)
    for _ in range(args.epochs):
        for user, pos, neg in bpr_batches(train, num_items):
            adam.zero_grad()
            pos_rank = lightgcn(graph, torch.stack([user, pos + num_users]))
            neg_rank = lightgcn(graph, torch.stack([user, neg + num_users]))
            node_id = torch.cat([user, pos + num_users, neg + num_users])
            lightgcn.recommendation_loss(pos_rank, neg_rank, node_id=node_id,
                                         lambda_reg=1e-4).backward()
            adam.step()
    with torch.no_grad():
        emb = lightgcn.get_embedding(graph)
    score = emb[users] @ emb[num_users:].t()
    seen = torch.zeros(num_users, num_items, dtype=torch.bool)
    seen[train[0], train[1]] = True
    light_items = score.masked_fill(seen[users], float('-inf')).topk(20)[1]
    print(f'LightGCN test recall@20 '
          f'{recall_at_20(light_items, test, users):.4f}')

    # The hand-trained DiffKG saved (its KGs are the recipe's state),
    # loaded and recommending the same.
    recipe = get_recipe('diffkg')(**hparams)
    recipe.loop = loop
    save_model(args.output, recipe, model, Sizes.from_data(data), train)
    loaded = load_model(args.output)
    same = torch.equal(loaded.recommend(users, k=20)[0], items)
    print(f'saved to {args.output}; loaded, it recommends the same items: '
          f'{same}')
    if not same:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
