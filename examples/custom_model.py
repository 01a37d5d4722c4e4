r"""Train your own recommender with the package's trainer: a plain matrix
factorisation with the BPR loss, written here and nowhere else, trained and
evaluated under the same protocol as DiffKG and LightGCN (validation early
stopping, checkpoints, the same metrics and result JSON).

    python examples/custom_model.py DATA --epochs 50 --output mf.json
    python examples/custom_model.py ../shared/data/lastfm-hetrec2011 \
        --checkpoint-dir runs/mf

DATA is anything ``diffkg-pyg train`` accepts (a dataset folder, a built-in
name, ``synthetic``).
"""
import argparse

import torch
import torch.nn.functional as F

from diffkg_pyg.data import load_dataset
from diffkg_pyg.files import save_json
from diffkg_pyg.hyperparameters import HyperParameter, hyperparameters
from diffkg_pyg.train import Recipe, Trainer


# Each hyper-parameter declared once, next to the signature it belongs to:
# its default, range errors, docstring entry, flag and help come from here.
@hyperparameters(
    HyperParameter('embedding_dim', int, 'embedding size', range='[1, inf)'),
    HyperParameter('l2_weight', float, 'L2 weight', range='[0, inf)'),
)
class MF(torch.nn.Module):
    r"""Matrix factorisation: :math:`\hat{y}_{ui} = \mathbf{p}_u^\top
    \mathbf{q}_i`.

    Args:
        num_users (int): The number of users.
        num_items (int): The number of items.
    """
    def __init__(self, num_users: int, num_items: int,
                 embedding_dim: int = 64) -> None:
        super().__init__()
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=0.1)
        torch.nn.init.normal_(self.item_emb.weight, std=0.1)

    def loss(self, user, pos, neg, l2_weight: float = 1e-4):
        u, i, j = self.user_emb(user), self.item_emb(pos), self.item_emb(neg)
        bpr = -F.logsigmoid((u * (i - j)).sum(dim=-1)).mean()
        l2 = (u.square() + i.square() + j.square()).sum(dim=-1).mean()
        return bpr + l2_weight * l2, bpr.detach()


class MFRecipe(Recipe):
    name = 'custom-mf'
    description = ('matrix factorisation with BPR, written in '
                   'examples/custom_model.py (the package has its own: mf)')
    model_class = MF  # Its declarations are the recipe's.

    def build_model(self, sizes):
        return MF(sizes.num_users, sizes.num_items,
                  self.hparams['embedding_dim'])

    def train_epoch(self, model, context, epoch):
        # The context: the run's generator, settings, batch helpers and
        # the optimiser step (which logs the epoch's mean of every term).
        for user, pos, neg in context.bpr_batches(f'epoch {epoch}'):
            loss, bpr = model.loss(user, pos, neg, self.hparams['l2_weight'])
            context.step(context.optimizers, loss, bpr=bpr)
        return {}

    def embeddings(self, model):
        # A dot-product model: the scores are the inner products.
        return model.user_emb.weight, model.item_emb.weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('data', help='dataset folder or built-in name')
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--patience', type=int, default=10)
    parser.add_argument('--lr', type=float, default=1e-2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val-ratio', type=float, default=0.1)
    parser.add_argument('--embedding-dim', type=int, default=64)
    parser.add_argument('--checkpoint-dir', default=None)
    parser.add_argument('--output', default=None)
    args = parser.parse_args()

    data = load_dataset(args.data, val_ratio=args.val_ratio)
    recipe = MFRecipe(embedding_dim=args.embedding_dim)
    trainer = Trainer(recipe, data, lr=args.lr, seed=args.seed,
                      checkpoint_dir=args.checkpoint_dir)
    result = trainer.fit(args.epochs, args.patience)
    print(f'mf on {args.data}: best epoch {result.best_epoch}, test '
          f'recall@20 {result.test["recall@20"]:.4f}')
    if args.output:
        save_json(args.output, trainer.result_record(result))


if __name__ == '__main__':
    main()
