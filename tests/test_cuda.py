r"""The CUDA paths, marked ``cuda``: skipped where no GPU is visible. With
``DIFFKG_TEST_DEVICE=cpu`` the same tests run on the CPU (what
``benchmarks/gpu_check.sh --device cpu`` and ``tests/test_gpu_check.py``
do), so that their code cannot rot before a GPU runs them. On a GPU they
check every registered model's training, evaluation and saved model
across devices, exact resume with CUDA's random state, ``torch.compile``
and its fallback, the sparse denoiser and the symmetric propagation
against their dense formulas, the host syncs of DiffKG's recommendation
step (``torch.cuda.set_sync_debug_mode``) and, with two GPUs, the NCCL
reduction of dense and sparse gradients."""
import logging
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from diffkg_pyg import load_model
from diffkg_pyg.nn import SparseDenoiser
from diffkg_pyg.nn.denoiser import CompiledOrEager
from diffkg_pyg.nn.functional import symmetric_propagation
from diffkg_pyg.nn.kg_diffusion import Support, denoiser_loss
from diffkg_pyg.testing import dense_denoiser
from diffkg_pyg.train.checkpoint import load_checkpoint
from tests.conftest import TEST_DEVICE
from tests.nn.test_functional import user_item_adjacency
from tests.nn.test_kg_diffusion import dense_loss, loss_case
from tests.train.test_every_model import NAMES, ROOT, make_trainer

pytestmark = pytest.mark.cuda
DEVICE = torch.device(TEST_DEVICE)
ON_CUDA = DEVICE.type == 'cuda'
# Float sums in another order (CUDA's atomics) differ in the last bits:
ATOL = 1e-4 if ON_CUDA else 1e-6


@pytest.mark.parametrize('name', NAMES)
def test_every_model_trains_on_the_device_and_loads_on_the_cpu(name,
                                                               tmp_path):
    trainer = make_trainer(name, device=DEVICE)
    result = trainer.fit(2, patience=2)
    assert {p.device.type for p in trainer.model.parameters()} == \
        {DEVICE.type}
    assert all(0.0 <= v <= 1.0 for v in result.test.values())
    record = trainer.result_record(result)
    assert record['device'] == str(DEVICE)
    assert ('peak_gpu_mb' in record) == ON_CUDA
    assert record.get('peak_gpu_mb', 1.0) > 0

    path = str(tmp_path / 'model.pt')
    trainer.save_model(path)
    users = torch.tensor([0, 7, 59])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.recipe.scores(trainer.model)(
            users.to(DEVICE)).cpu()
    on_cpu = load_model(path)  # Saved from the device, read on the CPU.
    assert on_cpu.device.type == 'cpu'
    assert torch.allclose(on_cpu.scores(users), expected, atol=ATOL)
    back = load_model(path, map_location=DEVICE)
    assert back.device.type == DEVICE.type
    assert torch.allclose(back.scores(users).cpu(), expected, atol=ATOL)
    items, scores = back.recommend(users, k=10)
    cpu_items, cpu_scores = on_cpu.recommend(users, k=10)
    assert torch.allclose(scores.cpu(), cpu_scores, atol=ATOL)


@pytest.mark.parametrize('name', ['diffkg', 'kgcl', 'diffrec'])
def test_resume_on_the_device_continues_the_run(name, tmp_path):
    expected = make_trainer(name, device=DEVICE).fit(3, patience=3)
    folder = str(tmp_path / 'run')
    make_trainer(name, device=DEVICE, checkpoint_dir=folder).fit(
        2, patience=3)
    last = osp.join(folder, 'last.pt')
    saved = load_checkpoint(last)
    assert saved['rng']['generator_device'] == DEVICE.type
    assert ('cuda' in saved['rng']) == ON_CUDA  # CUDA's own generators.
    resumed = make_trainer(name, device=DEVICE).fit(3, patience=3,
                                                    resume=last)
    assert resumed.epochs_run == 3
    for key, value in expected.test.items():
        assert resumed.test[key] == pytest.approx(value, abs=ATOL)
    for mine, theirs in zip(resumed.history, expected.history):
        for key, value in theirs.items():
            if not key.endswith('_seconds'):
                assert mine[key] == pytest.approx(value, rel=1e-3,
                                                  abs=ATOL), key


def test_a_checkpoint_resumes_only_on_its_device_type(tmp_path):
    other = 'cpu' if ON_CUDA else 'cuda'
    folder = str(tmp_path / 'run')
    make_trainer('mf', device=DEVICE, checkpoint_dir=folder).fit(1)
    path = osp.join(folder, 'last.pt')
    saved = torch.load(path, weights_only=False)
    saved['rng']['generator_device'] = other
    saved['rng_ranks'][0]['generator_device'] = other
    torch.save(saved, path)
    with pytest.raises(ValueError, match=f'written by a run on {other}'):
        make_trainer('mf', device=DEVICE).fit(2, resume=path)


@pytest.mark.slow  # A cold torch.compile.
def test_compiled_denoiser_on_the_device_matches_eager_and_falls_back(
        caplog):
    ptr = torch.tensor([0, 3, 5, 9], device=DEVICE)
    index = torch.tensor([0, 4, 7, 2, 9, 1, 3, 5, 8], device=DEVICE)
    t = torch.tensor([0, 2, 4], device=DEVICE)
    x = torch.rand(index.numel(), device=DEVICE)
    outputs, grads = [], []
    for use_compile in (False, True):
        torch.manual_seed(0)
        model = SparseDenoiser(12, 16, 4, dropout=0.0,
                               use_compile=use_compile).to(DEVICE)
        out = model(x, ptr, index, t)
        out.square().sum().backward()
        outputs.append(out)
        grads.append(model.output_emb.weight.grad.to_dense())
    wrapper = model._support_output
    assert isinstance(wrapper, CompiledOrEager)
    assert wrapper.compiled is not None and wrapper.backward_checked
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)

    def broken(*args, **kwargs):
        raise RuntimeError('no compiler for this device')

    wrapper.compiled = broken
    with caplog.at_level(logging.WARNING, logger='diffkg_pyg'):
        out = model(x, ptr, index, t)
    assert wrapper.compiled is None  # Eager from now on, said once:
    assert any('no compiler for this device' in r.getMessage()
               for r in caplog.records)
    assert torch.allclose(out, outputs[0], atol=1e-5)


@pytest.mark.parametrize('training', [False, True])
def test_sparse_denoiser_equals_the_dense_formulation_on_the_device(
        training):
    denoiser, diffusion, x0, noise, mask, item_user, head = loss_case()
    denoiser.train(training)
    expected = dense_loss(denoiser, diffusion, x0, torch.tensor([0, 2, 4]),
                          noise, mask if training else None, item_user,
                          head, 0.5)
    denoiser, diffusion = denoiser.to(DEVICE), diffusion.to(DEVICE)
    x0, noise, mask, item_user, head = (
        v.to(DEVICE) for v in (x0, noise, mask, item_user, head))
    batch_size, num_entities = x0.shape
    support = Support(
        ptr=torch.arange(batch_size + 1, device=DEVICE) * num_entities,
        index=torch.arange(num_entities, device=DEVICE).repeat(batch_size),
        target=x0.view(-1), weight=torch.ones(batch_size * num_entities,
                                              device=DEVICE))
    got = denoiser_loss(denoiser, diffusion, support,
                        torch.tensor([0, 2, 4], device=DEVICE), item_user,
                        head, 0.5, noise, mask)
    for value, dense in zip(got, expected):
        assert value.device.type == DEVICE.type
        assert torch.allclose(value.cpu(), dense, atol=1e-5)
    # The denoiser alone, outputs and sparse gradient:
    t = torch.tensor([1, 3, 0], device=DEVICE)
    out = denoiser.eval()(x0.view(-1), support.ptr, support.index, t)
    assert torch.allclose(out.view(batch_size, -1),
                          dense_denoiser(denoiser, x0, t), atol=1e-5)


@pytest.mark.parametrize('num_layers', [1, 3])
def test_symmetric_propagation_on_the_device(num_layers):
    dense, adj = user_item_adjacency(seed=num_layers)
    x = torch.randn(12, 5, dtype=torch.float64)
    grad = torch.randn(12, 5, dtype=torch.float64)
    x_dense = x.clone().requires_grad_()
    expected = sum(torch.linalg.matrix_power(dense, layer) @ x_dense
                   for layer in range(num_layers + 1))
    want, = torch.autograd.grad(expected, x_dense, grad)
    x_device = x.to(DEVICE).requires_grad_()
    out = symmetric_propagation(adj.to(DEVICE), x_device, num_layers)
    got, = torch.autograd.grad(out, x_device, grad.to(DEVICE))
    assert out.device.type == got.device.type == DEVICE.type
    assert torch.allclose(out.detach().cpu(), expected.detach())
    assert torch.allclose(got.cpu(), want)


def test_diffkg_recommendation_step_waits_only_for_the_negative_sampler():
    trainer = make_trainer('diffkg', device=DEVICE, max_batches=3)
    trainer.fit(1, patience=1)
    model, context, recipe = trainer.model, trainer.context, trainer.recipe
    model.train()
    recipe.train_recommendation(model, context, 2)  # Caches, handles.
    if ON_CUDA:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            recipe.train_recommendation(model, context, 3)
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [(osp.relpath(w.filename, ROOT), w.lineno) for w in caught
             if 'synchroniz' in str(w.message)]
    # The rejection rounds of the negative sampler (tests/test_device.py
    # lists every site where a step may wait, and why):
    assert {path for path, _ in syncs} <= {
        osp.join('diffkg_pyg', 'train', 'sampling.py')}, syncs
    assert trainer.model.choose_noise_columns() == (
        None if ON_CUDA and model.num_entities > 16384 else 16384)


# Two processes reduce a dense and a sparse gradient (rank 1 touches no
# row) and a CPU tensor, over NCCL on two GPUs (gloo on the CPU).
REDUCTION = textwrap.dedent('''
    import os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from diffkg_pyg import distributed

    def run(rank, device_type, port):
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=port,
                          RANK=str(rank), WORLD_SIZE='2',
                          LOCAL_RANK=str(rank))
        device = distributed.init_from_env(torch.device(device_type), 60.0)
        dense = torch.nn.Parameter(torch.zeros(3, device=device))
        dense.grad = torch.full((3, ), rank + 1.0, device=device)
        table = torch.nn.Parameter(torch.zeros(4, 2, device=device))
        if rank == 0:
            rows = torch.tensor([[1, 3]], device=device)
            table.grad = torch.sparse_coo_tensor(
                rows, torch.ones(2, 2, device=device), (4, 2))
        distributed.all_reduce_gradients([dense, table])
        assert torch.equal(dense.grad.cpu(), torch.full((3, ), 3.0))
        expected = torch.zeros(4, 2)
        expected[[1, 3]] = 1.0
        assert torch.equal(table.grad.to_dense().cpu(), expected)
        counts = torch.tensor([rank + 1.0])  # A CPU tensor, under NCCL.
        distributed.all_reduce_sum(counts)
        assert counts.item() == 3.0
        dist.destroy_process_group()

    if __name__ == '__main__':
        # (Forked on the CPU: quicker; CUDA needs fresh processes.)
        mp.start_processes(run, args=(sys.argv[1], sys.argv[2]), nprocs=2,
                           start_method='fork' if sys.argv[1] == 'cpu'
                           else 'spawn')
        print('reduced')
''')


def test_two_processes_reduce_dense_and_sparse_gradients(tmp_path):
    if ON_CUDA and torch.cuda.device_count() < 2:
        pytest.skip('NCCL between two processes needs two GPUs')
    script = tmp_path / 'reduce.py'
    script.write_text(REDUCTION)
    with socket.socket() as sock:  # A free port.
        sock.bind(('127.0.0.1', 0))
        port = str(sock.getsockname()[1])
    process = subprocess.run(
        [sys.executable, str(script), DEVICE.type, port], cwd=ROOT,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': ROOT, 'OMP_NUM_THREADS': '1'})
    assert process.returncode == 0, process.stderr[-3000:]
    assert 'reduced' in process.stdout
