r"""Does the KG rebuild prefer relevant edges? On the embedded synthetic
dataset (whose planted irrelevant KG edges are marked), trains DiffKG and
reports, for the rebuilt KG before and after training, the fraction of
planted irrelevant edges kept and the fraction of relevant edges kept.

    python benchmarks/denoising.py --epochs 30 --seeds 0 1 2
"""
import argparse
import json

import torch

from diffkg_pyg.data import KG, synthetic_dataset
from diffkg_pyg.train import Trainer, get_recipe


def kept_fractions(data, kg_edge_index):
    store = data[KG]
    num_entities = data['entity'].num_nodes
    key = store.edge_index[0] * num_entities + store.edge_index[1]
    kept = torch.zeros(key.numel(), dtype=torch.bool)
    kept[torch.searchsorted(
        key, kg_edge_index[0] * num_entities + kg_edge_index[1])] = True
    noise = store.is_noise
    return {'noise_kept': float(kept[noise].float().mean()),
            'relevant_kept': float(kept[~noise].float().mean())}


def run(seed, epochs, use_compile, **hyperparameters):
    data = synthetic_dataset(seed=seed)
    recipe = get_recipe('diffkg')(use_compile=use_compile, **hyperparameters)
    trainer = Trainer(recipe, data, seed=seed, log=lambda line: None)
    untrained = kept_fractions(data, trainer.model.rebuild_kg(
        *trainer.context.graph.kg,
        generator=torch.Generator().manual_seed(seed))[0])
    result = trainer.fit(epochs, patience=epochs)
    trained = kept_fractions(data, trainer.recipe.loop.denoised_kg[0])
    return {'seed': seed, 'noise_ratio': float(data[KG].noise_ratio),
            'untrained': untrained, 'trained': trained,
            'best_epoch': result.best_epoch,
            'test_recall@20': result.test['recall@20']}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--keep-rate', type=float, default=0.5)
    parser.add_argument('--rebuild-k', type=int, default=1)
    parser.add_argument('--no-compile', action='store_true')
    parser.add_argument('--output', default=None)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        row = run(seed, args.epochs, not args.no_compile,
                  keep_rate=args.keep_rate, rebuild_k=args.rebuild_k)
        rows.append(row)
        print(f"seed {seed}: planted noise {row['noise_ratio']:.3f} of "
              f"edges | untrained denoiser keeps noise "
              f"{row['untrained']['noise_kept']:.3f} / relevant "
              f"{row['untrained']['relevant_kept']:.3f} | trained "
              f"(best epoch {row['best_epoch']}) keeps noise "
              f"{row['trained']['noise_kept']:.3f} / relevant "
              f"{row['trained']['relevant_kept']:.3f} | test recall@20 "
              f"{row['test_recall@20']:.4f}", flush=True)
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    main()
