"""Data-parallel training on the CPU with gloo: two processes (spawned by
the tests) against one."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from diffkg_pyg import distributed
from diffkg_pyg.data import ITEM_USER, USER_ITEM, synthetic_dataset
from diffkg_pyg.evaluation import RankingEvaluator
from diffkg_pyg.train import Trainer, TrainingInterrupted, get_recipe
from tests.conftest import flat_state

SMALL = {'diffkg': dict(embedding_dim=8, denoiser_hidden_channels=16,
                        use_compile=False),
         'lightgcn': dict(embedding_dim=8),
         'kgin': dict(embedding_dim=8, num_layers=2),
         # KG batches of 33 and 15 heads: uneven parts.
         'kgat': dict(embedding_dim=8, relation_dim=4, hidden_channels=(8, 4),
                      kg_batch_size=33),
         'kgcl': dict(embedding_dim=8, num_layers=2, kg_batch_size=15)}
BATCH = 32


def small_data():
    # An odd number of train interactions (533): the epoch's last
    # 32-triple batch, 21 triples, splits 11/10 between 2 processes, so a
    # step weighted by 1/P instead of each part's share fails the tests.
    data = synthetic_dataset(num_users=60, num_items=80, num_clusters=4,
                             attributes_per_cluster=4)
    store = data[USER_ITEM]
    store.edge_index = store.edge_index[:, 1:]
    data[ITEM_USER].edge_index = store.edge_index.flip(0)
    assert store.edge_index.size(1) % BATCH % 2 == 1
    return data


def make_trainer(name, **kwargs):
    recipe = get_recipe(name)(**SMALL[name])
    return Trainer(recipe, small_data(), batch_size=BATCH, ks=(5, 20),
                   log=lambda line: None, **kwargs)


def _worker(rank, world_size, store, job, out):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store}',
                            rank=rank, world_size=world_size)
    try:
        result = job(rank)
        torch.save(result, os.path.join(out, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def run_processes(tmp_path, job, world_size=2):
    r"""Runs :obj:`job(rank)` in :obj:`world_size` spawned processes of one
    gloo group; returns what each returned, in rank order."""
    out = tmp_path / f'out-{job.__name__}'
    out.mkdir()
    mp.spawn(_worker, args=(world_size, str(tmp_path / f'store-{job.__name__}'
                                            ), job, str(out)),
             nprocs=world_size, join=True)
    return [torch.load(out / f'rank{r}.pt', weights_only=False)
            for r in range(world_size)]


# Jobs (module level: the spawned processes import them) ###################

def _fit(name, epochs=3, **kwargs):
    trainer = make_trainer(name, **kwargs.pop('trainer', {}))
    result = trainer.fit(epochs, patience=epochs, **kwargs)
    return {'test': result.test, 'valid': result.valid,
            'history': result.history,
            'state': flat_state(trainer.model.state_dict()),
            'world_size': trainer.world_size,
            'record': trainer.result_record(result)}


def _fit_diffkg(rank):
    return _fit('diffkg')


def _fit_lightgcn(rank):
    return _fit('lightgcn')


def _fit_resumed(rank):
    # Epochs 1-2 with checkpoints (what a killed run leaves), then a new
    # trainer resumes from rank 0's last.pt up to epoch 4.
    folder = os.environ['DIFFKG_TEST_CHECKPOINTS']
    _fit('diffkg', epochs=2, trainer={'checkpoint_dir': folder})
    dist.barrier()
    return _fit('diffkg', epochs=4, resume=os.path.join(folder, 'last.pt'))


def _fit_four(rank):
    return _fit('diffkg', epochs=4)


class Recorder(torch.optim.Optimizer):
    r"""Records the gradients of every step and leaves the parameters."""
    def __init__(self, params):
        super().__init__(params, {})
        self.grads = []

    def step(self, closure=None):
        self.grads.append([None if p.grad is None else
                           p.grad.to_dense().clone()
                           for group in self.param_groups
                           for p in group['params']])


def _gradients(name):
    # The gradients of every step of one epoch (parameters unchanged).
    trainer = make_trainer(name)
    recorders = [Recorder(o.param_groups[0]['params'])
                 for o in trainer.optimizers]
    trainer.context.optimizers = recorders
    if name == 'diffkg':
        trainer.recipe.optimizer = recorders[0]
        trainer.recipe.denoiser_optimizers = recorders[1:]
    trainer.train_epoch(1)
    return [r.grads for r in recorders]


def _rebuild_drifts_on_rank_1(rank):
    # Rank 1's rebuild keeps other edges (as non-deterministic kernels
    # could make it): after the epoch every rank holds rank 0's KG.
    trainer = make_trainer('diffkg', max_batches=1)
    loop = trainer.recipe.loop
    rebuild = loop.rebuild

    def drifting(**kwargs):
        kg = rebuild(**kwargs)
        if rank == 1:
            loop.denoised_kg = (kg[0][:, 1:], kg[1][1:])
        return loop.denoised_kg

    loop.rebuild = drifting
    trainer.train_epoch(1)
    return loop.denoised_kg


#: The models whose split steps are checked against one process.
SPLIT_MODELS = ('diffkg', 'lightgcn', 'kgin', 'kgat', 'kgcl')


def _gradients_of_every_model(rank):
    # One spawn for all of them (a spawn costs more than a model's epoch).
    return {name: _gradients(name) for name in SPLIT_MODELS}


def _reduce(rank):
    dense = torch.nn.Parameter(torch.zeros(3))
    unused = torch.nn.Parameter(torch.zeros(2))
    partial = torch.nn.Parameter(torch.zeros(2))  # A gradient on rank 1.
    table = torch.nn.Embedding(5, 2, sparse=True)
    dense.grad = torch.full((3, ), float(rank + 1))
    if rank == 1:
        partial.grad = torch.ones(2)
    table(torch.tensor([rank, 4])).sum().backward()
    rows = torch.nn.Embedding(3, 2, sparse=True)  # Touched on rank 0 only.
    if rank == 0:
        rows(torch.tensor([2])).sum().backward()
    distributed.all_reduce_gradients([dense, unused, partial, table.weight,
                                      rows.weight])
    return {'dense': dense.grad, 'unused': unused.grad,
            'partial': partial.grad, 'table': table.weight.grad.to_dense(),
            'rows': rows.weight.grad.to_dense(),
            'part': distributed.shard(torch.arange(7))}


def _empty_part(rank):
    # A batch of 1 triple: rank 1's part is empty, its loss a NaN mean.
    trainer = make_trainer('lightgcn')
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = Recorder([weight])
    x = torch.tensor([[3.0, 4.0]])
    part = trainer.context.shard(torch.tensor([0]))
    loss = (weight * x[part]).mean()
    trainer.context.step([optimizer], loss)
    return (optimizer.grads[0][0],
            trainer.context.accounting.epoch_means(1))


def _evaluate(rank=None):
    # Random scores of the test split: sharded in a process group.
    store = small_data()[USER_ITEM]
    evaluator = RankingEvaluator(store.test_edge_index, [store.edge_index],
                                 60, 80, ks=(5, 20), batch_size=16)
    scores = torch.randn(60, 80, generator=torch.Generator().manual_seed(0))
    return evaluator(lambda users: scores[users],
                     sharded=rank is not None)


def _bad_batch(rank):
    try:
        Trainer(get_recipe('lightgcn')(**SMALL['lightgcn']), small_data(),
                batch_size=33)
    except ValueError as error:
        return str(error)
    return None


def _late_signal(rank):
    # Rank 0's signal lands just after the processes agreed on epoch 1's
    # flag (between the reduction and the check): it must wait for epoch
    # 2's agreement, or rank 0 stops alone and rank 1 trains on into a
    # closed connection (a CI run failed so).
    trainer = make_trainer('lightgcn', interrupt_checkpoint=False)
    agreed = trainer.checkpointer.on_epoch_end

    def on_epoch_end(state, *args, **kwargs):
        if rank == 0 and state.epoch == 1:
            trainer._interrupted = True
        return agreed(state, *args, **kwargs)

    trainer.checkpointer.on_epoch_end = on_epoch_end
    try:
        trainer.fit(5, patience=5)
    except TrainingInterrupted as interrupt:
        return str(interrupt)
    return None


# Tests ###################################################################

def test_one_process_is_the_identity():
    index = torch.arange(5)
    part, share = distributed.shard(index)
    assert part is index and share == 1.0
    assert distributed.get_world_size() == 1
    trainer = make_trainer('lightgcn')
    assert trainer.context.shard_batch_size == BATCH
    assert trainer.result_record(trainer.fit(1, 1))['world_size'] == 1


def test_all_reduce_gradients_and_shard(tmp_path):
    out = run_processes(tmp_path, _reduce)
    for result in out:
        assert torch.equal(result['dense'], torch.full((3, ), 3.0))
        assert result['unused'] is None
        assert torch.equal(result['partial'], torch.ones(2))
        # Rows 0 and 1 once each, row 4 on both ranks:
        expected = torch.tensor([[1.0] * 2, [1.0] * 2, [0.0] * 2,
                                 [0.0] * 2, [2.0] * 2])
        assert torch.equal(result['table'], expected)
        assert torch.equal(result['rows'], torch.tensor([[0.0] * 2,
                                                         [0.0] * 2,
                                                         [1.0] * 2]))
    assert out[0]['part'][0].tolist() == [0, 1, 2, 3]
    assert out[1]['part'][0].tolist() == [4, 5, 6]
    assert out[0]['part'][1] == pytest.approx(4 / 7)


def test_an_empty_part_contributes_nothing(tmp_path):
    for grad, terms in run_processes(tmp_path, _empty_part):
        assert torch.equal(grad, torch.tensor([1.5, 2.0]))
        assert terms == {'loss': 3.5}


def test_sharded_evaluation_equals_one_process(tmp_path):
    expected = _evaluate()
    for result in run_processes(tmp_path, _evaluate):
        assert result == pytest.approx(expected, abs=1e-6)


def test_two_processes_step_with_one_process_gradients(tmp_path):
    # Every step's summed gradient equals the one-process gradient of the
    # whole batch (the uneven last batch included), for every optimiser,
    # for each model that splits its steps.
    torch.set_num_threads(1)
    ranks = run_processes(tmp_path, _gradients_of_every_model)
    for name in SPLIT_MODELS:
        single = _gradients(name)
        for rank in ranks:
            assert len(rank[name]) == len(single), name
            for steps, expected_steps in zip(rank[name], single):
                assert len(steps) == len(expected_steps) > 1, name
                for grads, expected in zip(steps, expected_steps):
                    for grad, value in zip(grads, expected):
                        if value is None:
                            assert grad is None, name
                        else:
                            # KGCL's losses are sums over the batch: its
                            # gradients, and their rounding, are 32x
                            # larger.
                            torch.testing.assert_close(
                                grad, value, rtol=1e-5,
                                atol=32e-7 if name == 'kgcl' else 1e-7,
                                msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['diffkg', 'lightgcn'])
def test_two_processes_train_as_one(tmp_path, name):
    torch.set_num_threads(1)
    single = _fit(name)
    job = _fit_diffkg if name == 'diffkg' else _fit_lightgcn
    ranks = run_processes(tmp_path, job)
    for rank in ranks:
        assert rank['world_size'] == 2
        assert rank['record']['backend'] == 'gloo'
        # Reduction order only: the same metrics to 1e-4.
        for split in ('valid', 'test'):
            for key, value in single[split].items():
                assert rank[split][key] == pytest.approx(value, abs=1e-4)
        for key, value in single['state'].items():
            torch.testing.assert_close(rank['state'][key], value,
                                       atol=1e-5, rtol=1e-4)
        losses = [r['loss'] for r in single['history']]
        assert [r['loss'] for r in rank['history']] == pytest.approx(
            losses, rel=1e-4)
    # Every rank holds the same parameters, bit for bit.
    for key, value in ranks[0]['state'].items():
        assert torch.equal(ranks[1]['state'][key], value), key
    assert len(ranks[0]['record']['peak_rss_mb_ranks']) == 2


@pytest.mark.slow
def test_two_processes_resume_as_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setenv('DIFFKG_TEST_CHECKPOINTS', str(tmp_path))
    resumed = run_processes(tmp_path, _fit_resumed)
    whole = run_processes(tmp_path, _fit_four)
    for a, b in zip(resumed, whole):
        assert a['test'] == b['test']
        for key, value in b['state'].items():
            assert torch.equal(a['state'][key], value), key
    saved = torch.load(tmp_path / 'last.pt', weights_only=False)
    assert saved['world_size'] == 2 and len(saved['rng_ranks']) == 2
    # One process may not resume a checkpoint of two.
    trainer = make_trainer('diffkg')
    with pytest.raises(ValueError, match='written by 2 process'):
        trainer.fit(5, resume=str(tmp_path / 'last.pt'))


def test_batch_must_split_evenly(tmp_path):
    for message in run_processes(tmp_path, _bad_batch):
        assert 'not a multiple of the 2 processes' in message


def _torchrun_command(*args):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone',
            '--nproc_per_node', '2', '-m', 'diffkg_pyg', 'train',
            'synthetic', '--threads', '1', *args]


def _torchrun(tmp_path, *args):
    return subprocess.run(_torchrun_command(*args), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def _leaving_worker(rank, port, out):
    # Rank 1 joins the group and dies; rank 0 then waits on it in a
    # collective, which must fail (at the latest after the group's
    # timeout), not hang.
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE='2', LOCAL_RANK=str(rank))
    distributed.init_from_env(torch.device('cpu'), timeout=10.0)
    if rank == 1:
        os._exit(0)  # Without a word to the others.
    start = time.monotonic()
    try:
        make_trainer('lightgcn').fit(2, 2)
        message = None
    except Exception as error:  # noqa: BLE001 (whatever gloo raises)
        message = type(error).__name__
    with open(out, 'w') as f:
        json.dump({'error': message, 'seconds': time.monotonic() - start}, f)
    os._exit(0)


def test_a_rank_that_dies_does_not_hang_the_others(tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    out = tmp_path / 'rank0.json'
    context = mp.get_context('spawn')
    processes = [context.Process(target=_leaving_worker,
                                 args=(rank, port, str(out)))
                 for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert not process.is_alive()
    result = json.loads(out.read_text())
    assert result['error'] is not None and result['seconds'] < 60


def _descendants(pid):
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_torchrun_killed_and_resumed_equals_uninterrupted(tmp_path):
    # SIGKILL to torchrun and both ranks once a checkpoint of epoch >= 2 is
    # on disk, then a resume; against an uninterrupted run.
    flags = ['--model', 'diffkg', '--embedding-dim', '8',
             '--denoiser-hidden-channels', '16', '--epochs', '4',
             '--patience', '4', '--checkpoint-dir', 'ck']
    process = subprocess.Popen(_torchrun_command(*flags), cwd=tmp_path,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    checkpoint = tmp_path / 'ck' / 'last.pt'
    deadline = time.monotonic() + 240
    epoch = 0
    while epoch < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        if checkpoint.exists():
            epoch = torch.load(checkpoint, weights_only=False)[
                'fit_state']['epoch']
    # torchrun starts its workers in their own sessions: kill them by pid.
    for pid in [*_descendants(process.pid), process.pid]:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    time.sleep(1.0)  # Nothing may write after the kill.
    epoch = torch.load(checkpoint, weights_only=False)['fit_state']['epoch']
    assert 2 <= epoch < 4, epoch
    done = _torchrun(tmp_path, *flags, '--resume', str(checkpoint),
                     '--output', 'resumed.json')
    assert done.returncode == 0, done.stderr
    done = _torchrun(tmp_path, *flags[:-2], '--output', 'whole.json')
    assert done.returncode == 0, done.stderr
    resumed, whole = (json.loads((tmp_path / f).read_text())
                      for f in ('resumed.json', 'whole.json'))
    assert resumed['test'] == whole['test']
    assert resumed['valid'] == whole['valid']
    for a, b in zip(resumed['history'], whole['history']):
        assert {k: v for k, v in a.items() if 'seconds' not in k} == \
            {k: v for k, v in b.items() if 'seconds' not in k}


@pytest.mark.slow
def test_torchrun_command_line(tmp_path):
    done = _torchrun(tmp_path, '--model', 'lightgcn', '--epochs', '2',
                     '--output', 'out.json')
    assert done.returncode == 0, done.stderr
    # Rank 0 alone prints (one dataset table, one summary).
    assert done.stdout.count('| users ') == 1
    assert done.stdout.count('2 processes') == 1
    record = json.loads((tmp_path / 'out.json').read_text())
    assert record['world_size'] == 2 and record['backend'] == 'gloo'
    # A batch the processes cannot split: one line per rank, no hang.
    done = _torchrun(tmp_path, '--model', 'lightgcn', '--epochs', '1',
                     '--batch-size', '1023')
    assert done.returncode != 0
    # (torchrun then reports the failed child with its own traceback.)
    message = ('diffkg-pyg: error: batch_size 1023 is not a multiple of '
               'the 2 processes (the global batch is split evenly among '
               'them)')
    ours = done.stderr.count('diffkg-pyg: ')
    assert 1 <= ours == done.stderr.count(message)


def test_a_signal_after_the_agreement_stops_every_rank_together(tmp_path):
    stopped = run_processes(tmp_path, _late_signal)
    assert stopped == ['interrupted after epoch 2 (no checkpoint written)'
                       ] * 2


def test_the_rebuilt_kg_is_rank_0s_on_every_rank(tmp_path):
    kgs = run_processes(tmp_path, _rebuild_drifts_on_rank_1)
    assert kgs[0][0].size(1) > 0
    assert all(torch.equal(a, b) for a, b in zip(kgs[0], kgs[1]))


def test_a_cuda_index_other_than_local_rank_is_refused(monkeypatch):
    # Every rank on cuda:0 would share one GPU: refused before any CUDA
    # call (so this runs on a machine without one).
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '1')
    with pytest.raises(ValueError, match=r'uses its own GPU, cuda:LOCAL_RANK '
                       r'\(this one cuda:1\), not cuda:0'):
        distributed.init_from_env(torch.device('cuda:0'))


@pytest.mark.slow
def test_torchrun_sigterm_checkpoints_every_rank(tmp_path):
    # What a scheduler sends: torchrun passes SIGTERM to both ranks, which
    # finish the epoch together, write one checkpoint (with every rank's
    # random states) and stop; the run resumes from it.
    flags = ['--model', 'lightgcn', '--epochs', '100000', '--patience',
             '100000', '--checkpoint-dir', 'ck']
    process = subprocess.Popen(_torchrun_command(*flags), cwd=tmp_path,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    checkpoint = tmp_path / 'ck' / 'last.pt'
    deadline = time.monotonic() + 240
    while not checkpoint.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=240)
    assert err.count('diffkg-pyg: interrupted after epoch') == 2, err
    saved = torch.load(checkpoint, weights_only=False)
    assert len(saved['rng_ranks']) == 2
    epoch = saved['fit_state']['epoch']
    done = _torchrun(tmp_path, *flags[:2], '--epochs', str(epoch + 1),
                     '--patience', '5', '--resume', str(checkpoint),
                     '--output', 'resumed.json')
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / 'resumed.json').read_text())
    assert record['epochs_run'] == epoch + 1
