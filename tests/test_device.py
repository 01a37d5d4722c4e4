r"""Device handling checked on the CPU (the CUDA runs themselves are in
``tests/test_cuda.py``): every tensor a training epoch creates takes its
device from an input, and the operations of a step that would make the
host wait for a GPU are only those the declared table below names (each
one's size or stopping test depends on the data)."""
import collections
import os.path as osp
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.train.test_every_model import NAMES, make_trainer

PACKAGE = osp.join('diffkg_pyg', '')
aten = torch.ops.aten

#: Operators that wait for the device on CUDA (their result's size or
#: value is read on the host), besides indexing with a boolean mask and
#: repeat_interleave without its output size.
SYNCING = {aten.nonzero.default, aten._local_scalar_dense.default,
           aten.masked_select.default, aten.unique_dim.default,
           aten._unique2.default, aten.unique_consecutive.default,
           aten.bincount.default, aten.equal.default,
           aten.is_nonzero.default}
INDEXING = {aten.index.Tensor, aten.index_put_.default,
            aten.index_put.default, aten._index_put_impl_.default}

#: Where a training step may wait for the device, and why it must (what a
#: step waits for is data-dependent: sizes of sampled sets, stopping tests).
SYNC_SITES = {
    'train/sampling.py': 'negative items by rejection: a round ends when '
                         'no drawn item is a train item of its user',
    'csr.py': 'CSR row gathers: how many entries the rows hold',
    'nn/kg_diffusion.py': "DiffKG's denoiser support: how many distinct "
                          'non-edges were drawn',
    'optim.py': 'SparseRowAdam: which rows a sparse gradient touched',
    'nn/models/kgat.py': "KGAT's attention: one transfer matrix per "
                         'relation present (the relations are read)',
    'train/recipes/kgat.py': "KGAT's KG batches: heads with edges, the "
                             'number of relations',
    'train/recipes/kgcl.py': "KGCL's TransE batches: the heads present",
    'data/graph.py': "KGCL's augmented graphs, built every epoch: CSR "
                     'conversion of the kept edges',
    'nn/models/kgin.py': "KGIN's node dropout: how many edges are kept",
}
#: The sites allowed in DiffKG's recommendation step (phase 3).
RECOMMENDATION_SITES = {'train/sampling.py'}


class SyncSites(TorchDispatchMode):
    r"""Counts, by the package's line that called them, the operators that
    would wait for a CUDA device (not those torch's own optimisers run on
    their CPU step counters)."""
    def __init__(self):
        super().__init__()
        self.sites = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        syncs = func in SYNCING
        if func in INDEXING:
            syncs = any(t is not None and t.dtype == torch.bool
                        for t in args[1])
        if func is aten.repeat_interleave.Tensor:
            syncs = kwargs.get('output_size') is None
        if syncs:
            stack = traceback.extract_stack()
            if not any(osp.join('torch', 'optim', '') in frame.filename
                       for frame in stack):
                ours = [f for f in stack if PACKAGE in f.filename]
                where = ours[-1].filename.split(PACKAGE)[-1] if ours \
                    else '?'
                self.sites[where] += 1
        return func(*args, **kwargs)


def test_the_detector_sees_what_syncs():
    x = torch.arange(6.0)
    with SyncSites() as mode:
        x[x > 2].sum()  # A boolean index,
        float(x.sum())  # a scalar read,
        torch.repeat_interleave(torch.tensor([1, 2]))  # a data-sized one,
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)
        x[torch.tensor([0, 2])]  # but not an integer index.
    assert sum(mode.sites.values()) == 3


@pytest.mark.parametrize('name', NAMES)
def test_a_training_epoch_syncs_only_where_declared(name):
    trainer = make_trainer(name, max_batches=2)
    trainer.fit(1, patience=1)
    model, context, recipe = trainer.model, trainer.context, trainer.recipe
    model.train()
    with SyncSites() as mode:
        if hasattr(recipe, 'train_recommendation'):
            recipe.train_recommendation(model, context, 2)
            assert set(mode.sites) <= RECOMMENDATION_SITES, mode.sites
        recipe.train_epoch(model, context, 2)
    assert set(mode.sites) <= set(SYNC_SITES), mode.sites


def test_planted_tensor_without_device_is_caught():
    x = torch.ones(3)
    with pytest.raises(RuntimeError, match='device'):
        with torch.device('meta'):
            torch.zeros(3) + x  # What a factory call without device= does.


@pytest.mark.parametrize('name', NAMES)
def test_an_epoch_creates_its_tensors_on_its_inputs_device(name):
    # Every factory call without device= makes a meta tensor here, which
    # fails at its first use beside the run's tensors.
    trainer = make_trainer(name, max_batches=2)
    trainer.fit(1, patience=1)
    users = torch.arange(5)
    trainer.model.train()
    with torch.device('meta'):
        trainer.recipe.train_epoch(trainer.model, trainer.context, 2)
        trainer.model.eval()
        with torch.no_grad():
            scores = trainer.recipe.scores(trainer.model)(users)
    assert scores.device.type == 'cpu' and torch.isfinite(scores).all()
