import json

import numpy as np
import pytest
import torch

from diffkg_pyg.cli import main
from diffkg_pyg.data import (
    USER_ITEM,
    DataFormatError,
    MissingFileError,
    has_kg,
    load_dataset,
    read_pair_array,
)
from diffkg_pyg.train import Trainer, get_recipe
from diffkg_pyg.train.checkpoint import load_checkpoint
from tests.conftest import write

SMALL = dict(hidden_channels=(8, 12), diffusion_steps=4)


def make_trainer(folder, name='diffrec', **kwargs):
    recipe = get_recipe(name)(**SMALL)
    kwargs = {'batch_size': 5, 'ks': (5, 20), 'log': lambda line: None,
              **kwargs}
    return Trainer(recipe, load_dataset(str(folder), log=False), **kwargs)


def test_diffrec_folder_keeps_its_splits_and_order(diffrec_folder):
    data = load_dataset(str(diffrec_folder), log=False)
    store = data[USER_ITEM]
    lists = {name: np.load(diffrec_folder / f'{name}_list.npy')
             for name in ('train', 'valid', 'test')}
    # The dataset's own validation list, no re-split:
    assert sorted(map(tuple, store.val_edge_index.t().tolist())) == \
        sorted(map(tuple, lists['valid'].tolist()))
    assert sorted(map(tuple, store.test_edge_index.t().tolist())) == \
        sorted(map(tuple, lists['test'].tolist()))
    # Train pairs grouped by user, each user's in file order:
    train = lists['train']
    assert torch.equal(store.edge_index,
                       torch.from_numpy(train[np.argsort(train[:, 0],
                                                         kind='stable')].T))
    assert torch.equal(store.edge_index.t(),
                       torch.from_numpy(train[store.edge_time.numpy()]))
    assert not has_kg(data) and data['entity'].num_nodes == \
        data['item'].num_nodes


def test_duplicate_train_pairs_keep_the_first(tmp_path, diffrec_folder):
    train = np.load(diffrec_folder / 'train_list.npy')
    np.save(diffrec_folder / 'train_list.npy',
            np.concatenate([train, train[:3]]))
    data = load_dataset(str(diffrec_folder), log=False)
    assert data[USER_ITEM].edge_index.size(1) == len(train)
    assert data[USER_ITEM].edge_time.max() < len(train)


@pytest.mark.parametrize('array,match', [
    (np.zeros((3, 3), dtype=np.int64), r'shape \[n, 2\]; found shape \[3, 3'),
    (np.zeros((3, 2)), 'expected integer ids, found dtype float64'),
    (np.array([[0, 1], [2, -1]]), r'row 1: negative id \[2, -1\]'),
    (np.zeros((0, 2), dtype=np.int64), 'the array is empty'),
])
def test_bad_pair_arrays(tmp_path, array, match):
    path = tmp_path / 'train_list.npy'
    np.save(path, array)
    with pytest.raises(DataFormatError, match=match):
        read_pair_array(str(path))
    write(path, 'not numpy')
    with pytest.raises(DataFormatError, match='not a readable .npy array'):
        read_pair_array(str(path))


def test_missing_list_is_named(diffrec_folder, capsys):
    (diffrec_folder / 'valid_list.npy').unlink()
    with pytest.raises(MissingFileError, match='valid_list.npy'):
        load_dataset(str(diffrec_folder), log=False)
    assert main(['train', str(diffrec_folder), '--model', 'diffrec']) == 2
    assert 'valid_list.npy: file not found' in capsys.readouterr().err


def test_diffkg_refuses_a_dataset_without_kg(diffrec_folder, capsys):
    assert main(['train', str(diffrec_folder), '--epochs', '1']) == 2
    err = capsys.readouterr().err
    assert 'diffkg needs a knowledge graph' in err and err.count('\n') == 1


@pytest.mark.parametrize('name', ['diffrec', 'tdiffrec'])
def test_fit_validates_every_k_epochs(diffrec_folder, name):
    result = make_trainer(diffrec_folder, name, eval_every=2).fit(
        5, patience=10)
    validated = [r['epoch'] for r in result.history if 'valid_recall@5' in r]
    assert validated == [2, 4, 5]  # And the epoch cap.
    assert result.best_epoch in validated
    assert all(0.0 <= v <= 1.0 for v in result.test.values())


def test_early_stopping_counts_epochs_between_validations(diffrec_folder):
    # The authors' rule: validation every 5 epochs, stop 20 epochs after
    # the best (checked before an epoch); patience 15 here validates the
    # same epochs.
    trainer = make_trainer(diffrec_folder, eval_every=5, lr=1e-9)
    result = trainer.fit(100, patience=15)
    best = result.best_epoch
    validated = [r['epoch'] for r in result.history if 'valid_recall@5' in r]
    authors = [e for e in range(5, 101, 5) if e < best + 20]
    assert validated == authors and result.epochs_run == best + 15


def test_no_stop_before_the_first_validation(diffrec_folder):
    result = make_trainer(diffrec_folder, eval_every=4).fit(10, patience=2)
    assert result.best_epoch == 4 and result.epochs_run >= 4


def test_tdiffrec_needs_the_chronological_order():
    recipe = get_recipe('tdiffrec')(**SMALL)
    from diffkg_pyg.data import synthetic_dataset
    with pytest.raises(ValueError, match='chronological order'):
        Trainer(recipe, synthetic_dataset(num_users=30, num_items=40,
                                          num_clusters=2))


def test_diffrec_runs_on_a_kg_dataset(capsys):
    assert main(['train', 'synthetic', '--model', 'diffrec', '--epochs', '1',
                 '--dims', '16', '--steps', '3']) == 0
    assert 'diffrec on synthetic' in capsys.readouterr().out


def test_authors_names_and_config(diffrec_folder, tmp_path):
    config = write(tmp_path / 'run.toml', 'model = "diffrec"\n'
                   'dims = [8, 12]\nemb_size = 4\nsteps = 3\nreweight = 0\n'
                   'lr = 0.01\nbatch_size = 4\n')
    output = tmp_path / 'out.json'
    assert main(['train', str(diffrec_folder), '--config', config,
                 '--epochs', '2', '--mean_type', 'eps', '--sampling_noise=1',
                 '--output', str(output)]) == 0
    record = json.loads(output.read_text())
    hyperparameters = record['hyperparameters']
    assert hyperparameters['hidden_channels'] == [8, 12]
    assert hyperparameters['time_channels'] == 4
    assert hyperparameters['diffusion_steps'] == 3
    assert hyperparameters['reweight'] is False  # 0 means off here.
    assert hyperparameters['mean_type'] == 'eps'
    assert hyperparameters['sampling_noise'] is True
    assert record['settings']['lr'] == 0.01
    assert record['settings']['batch_size'] == 4


def test_preset_carries_training_settings(diffrec_folder, tmp_path):
    output = tmp_path / 'out.json'
    assert main(['train', str(diffrec_folder), '--model', 'diffrec',
                 '--preset', 'ml-1m', '--epochs', '1', '--dims', '8',
                 '--steps', '3', '--output', str(output)]) == 0
    record = json.loads(output.read_text())
    assert record['settings']['batch_size'] == 400  # From the preset,
    assert record['settings']['eval_every'] == 5
    assert record['settings']['epochs'] == 1  # under the flags.
    assert record['hyperparameters']['noise_scale'] == 0.005


@pytest.mark.parametrize('argv,message', [
    (['--dims', '8,x'], 'hidden_channels must be a list of integers'),
    (['--reweight', 'maybe'], "argument --reweight: invalid parse_bool"),
    (['--eval-every', '0'], '--eval-every: eval_every must be >= 1'),
])
def test_bad_diffrec_flags(diffrec_folder, capsys, argv, message):
    assert main(['train', str(diffrec_folder), '--model', 'diffrec',
                 *argv]) == 2
    assert message in capsys.readouterr().err


def test_exact_resume(diffrec_folder, tmp_path):
    straight = make_trainer(diffrec_folder, checkpoint_dir=str(
        tmp_path / 'a')).fit(4, patience=10)
    make_trainer(diffrec_folder, checkpoint_dir=str(tmp_path / 'b')).fit(
        2, patience=10)
    state = load_checkpoint(str(tmp_path / 'b' / 'last.pt'))['model']
    assert int(state['sampler.count'].sum()) > 0  # Histories are saved.
    resumed = make_trainer(diffrec_folder, checkpoint_dir=str(
        tmp_path / 'b')).fit(4, patience=10,
                             resume=str(tmp_path / 'b' / 'last.pt'))
    assert resumed.test == straight.test
    assert [r['loss'] for r in resumed.history] == \
        [r['loss'] for r in straight.history]


@pytest.mark.parametrize('name', ['diffrec', 'tdiffrec'])
def test_saved_model_scores_as_trained(diffrec_folder, tmp_path, name):
    from diffkg_pyg import load_model
    trainer = make_trainer(diffrec_folder, name)
    trainer.fit(2, patience=5)
    trainer.save_model(str(tmp_path / 'model.pt'))
    users = torch.arange(4)
    expected = trainer.recipe.scores(trainer.model.eval())(users)
    loaded = load_model(str(tmp_path / 'model.pt'))
    assert torch.allclose(loaded.scores(users), expected)


@pytest.mark.parametrize('with_embeddings', [True, False])
def test_ldiffrec_clusters_trains_saves_and_resumes(diffrec_folder, tmp_path,
                                                    with_embeddings):
    from diffkg_pyg import load_model
    if with_embeddings:  # The dataset's item_emb.npy, else a LightGCN's.
        num_items = load_dataset(str(diffrec_folder),
                                 log=False)['item'].num_nodes
        np.save(diffrec_folder / 'item_emb.npy',
                np.random.default_rng(0).normal(size=(num_items, 4))
                .astype(np.float32))

    def trainer(directory):
        recipe = get_recipe('ldiffrec')(
            num_clusters=2, latent_channels=6, hidden_channels=(8, ),
            diffusion_steps=3, embedding_epochs=2, autoencoder_lr=0.01)
        return Trainer(recipe, load_dataset(str(diffrec_folder), log=False),
                       batch_size=5, ks=(5, 20), log=lambda line: None,
                       checkpoint_dir=str(tmp_path / directory))
    straight = trainer('a')
    result = straight.fit(4, patience=10)
    assert straight.optimizers[0].param_groups[0]['lr'] == 0.01
    assert straight.optimizers[1].param_groups[0]['lr'] == 1e-3
    assert sorted(set(straight.recipe.cluster.tolist())) == [0, 1]
    trainer('b').fit(2, patience=10)
    resumed = trainer('b').fit(4, patience=10,
                               resume=str(tmp_path / 'b' / 'last.pt'))
    assert resumed.test == result.test
    straight.save_model(str(tmp_path / 'model.pt'))
    users = torch.arange(4)
    expected = straight.recipe.scores(straight.model.eval())(users)
    loaded = load_model(str(tmp_path / 'model.pt'))
    assert torch.allclose(loaded.scores(users), expected, atol=1e-6)


def test_ldiffrec_clusters_as_a_data_step(diffrec_folder):
    # item_clusters beforehand gives the clusters the recipe computes itself
    # with the same seed; a wrong data['item'].ldiffrec_cluster is refused.
    from diffkg_pyg.train.recipes import item_clusters

    def recipe_cluster(data):
        recipe = get_recipe('ldiffrec')(num_clusters=2, latent_channels=6,
                                        hidden_channels=(8, ),
                                        embedding_epochs=2)
        Trainer(recipe, data, batch_size=5, seed=4, log=lambda line: None)
        return recipe.cluster

    data = load_dataset(str(diffrec_folder), log=False)
    itself = recipe_cluster(data)
    data['item'].ldiffrec_cluster = item_clusters(data, 2, seed=4,
                                         embedding_epochs=2)
    assert torch.equal(data['item'].ldiffrec_cluster, itself)
    assert torch.equal(recipe_cluster(data), itself)
    data['item'].ldiffrec_cluster = torch.zeros_like(itself)  # 1 of 2.
    with pytest.raises(ValueError, match='one of the 2 clusters'):
        recipe_cluster(data)


def test_bad_item_embeddings_are_named(diffrec_folder):
    np.save(diffrec_folder / 'item_emb.npy', np.zeros((2, 3)))
    with pytest.raises(DataFormatError, match=r'item_emb.npy: expected '
                       r'float item embeddings of shape \['):
        load_dataset(str(diffrec_folder), log=False)


def test_the_authors_ldiffrec_flags_translate(tmp_path):
    # Their run.sh names: lr1/wd1 the autoencoder's, lr2/wd2 the
    # denoiser's (our training lr and weight decay), in_dims/out_dims.
    from diffkg_pyg.cli import build_train_parser
    from diffkg_pyg.train.flags import given_values
    recipe = get_recipe('ldiffrec')
    args, unknown = build_train_parser(recipe).parse_known_args(
        ['--lr1', '0.001', '--lr2', '0.0005', '--wd1', '0.0', '--wd2',
         '0.01', '--in_dims', '[300]', '--out_dims', '[]', '--beta_fixed',
         '0'])
    assert not unknown
    settings = given_values(args, 'setting', recipe.training_settings())
    model = given_values(args, 'model', recipe.hyperparameters)
    assert settings == {'lr': 0.0005, 'weight_decay': 0.01}
    assert model == {'autoencoder_lr': 0.001,
                     'autoencoder_weight_decay': 0.0,
                     'latent_channels': 300, 'decoder_hidden_channels': (),
                     'fixed_first_beta': False}
    # Only the released decoder is supported, and said so:
    with pytest.raises(ValueError, match='decoder_hidden_channels must be '
                       'one of'):
        recipe(out_dims='[300]')
    # lr2 is L-DiffRec's name, not every model's:
    args, unknown = build_train_parser(get_recipe('diffrec')
                                       ).parse_known_args(['--lr2', '1'])
    assert unknown[0] == '--lr2'
