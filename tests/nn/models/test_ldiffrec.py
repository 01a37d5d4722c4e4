import pytest
import torch

from diffkg_pyg import LDiffRec
from diffkg_pyg.nn.models.ldiffrec import kmeans


def test_kmeans_finds_separated_clusters_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=generator)
    x[:20] += 10.0
    x[20:35] -= 10.0
    cluster = kmeans(x, 3, torch.Generator().manual_seed(1))
    groups = [set(cluster[s].tolist()) for s in
              (slice(0, 20), slice(20, 35), slice(35, 60))]
    assert all(len(g) == 1 for g in groups)
    assert len(set.union(*groups)) == 3
    again = kmeans(x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(cluster, again)
    with pytest.raises(ValueError, match="'k' must lie in"):
        kmeans(x, 61)


def make_model(**kwargs):
    cluster = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])  # 3 and 7 items
    return LDiffRec(10, cluster, latent_channels=9, diffusion_steps=4,
                    hidden_channels=(6, ), **kwargs)


def test_latent_sizes_follow_the_authors():
    model = make_model()
    # int(3 / 10 * 9) = 2 for the first cluster, the rest for the last:
    assert model.latent_sizes == [2, 7]
    assert [(lin.in_features, lin.out_features) for lin in
            model.encoders] == [(3, 4), (7, 14)]
    assert (model.decoder.in_features, model.decoder.out_features) == \
        (9, 10)
    with pytest.raises(ValueError, match='without items'):
        LDiffRec(3, torch.tensor([0, 2, 2]))


def test_encode_and_kl():
    torch.manual_seed(0)
    model = make_model(encoder_dropout=0.0).eval()
    x = (torch.rand(4, 10) < 0.5).float()
    target, latent, kl = model.encode(x)
    assert torch.equal(target, x)
    first = torch.tanh(model.encoders[0](x[:, [0, 3, 7]]))
    second = torch.tanh(model.encoders[1](x[:, [1, 2, 4, 5, 6, 8, 9]]))
    mu = torch.cat([first[:, :2], second[:, :7]], dim=1)
    logvar = torch.cat([first[:, 2:], second[:, 7:]], dim=1)
    assert torch.allclose(latent, mu)  # The mean in evaluation.
    expected = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) -
                                           logvar.exp(), dim=1))
    assert torch.allclose(kl, expected)
    scores = model.recommend(x)
    assert torch.allclose(scores,
                          model.decode(model.diffrec.recommend(mu)))


@pytest.mark.parametrize('reweight', [True, False])
def test_loss_annealing_follows_the_authors(reweight):
    torch.manual_seed(0)
    model = make_model(lamda=0.05, anneal_cap=0.01, anneal_steps=4,
                       vae_anneal_cap=0.3, vae_anneal_steps=2,
                       reweight=reweight)
    x = (torch.rand(5, 10) < 0.5).float()
    # update_count counts epochs, update_count_vae steps (from 0):
    for step, epoch in enumerate([1, 1, 2, 3, 4, 5, 9]):
        loss, diffusion, recon, kl = model.loss(x, epoch)
        lamda = max((1 - (epoch - 1) / 4) * 0.05, 0.01)
        anneal = min(0.3, step / 2)
        vae = recon + anneal * kl
        expected = lamda * diffusion + vae if reweight else \
            diffusion + lamda * vae
        assert float(loss.detach()) == pytest.approx(float(expected),
                                                     rel=1e-6)
    assert int(model.num_updates) == 7


def test_ltdiffrec_weights_rows_in_chronological_order():
    from diffkg_pyg.nn.models import LTDiffRec
    from diffkg_pyg.nn.models.diffrec import chronological_weights
    ptr = torch.tensor([0, 1, 4])  # One interaction, then three.
    model = LTDiffRec(6, torch.tensor([0, 0, 0, 1, 1, 1]),
                      latent_channels=4, w_min=0.2, w_max=1.0)
    weight = model.input_weights(ptr)
    assert torch.allclose(weight, torch.tensor([0.2, 0.2, 0.6, 1.0]))
    assert torch.equal(weight, chronological_weights(ptr, 0.2, 1.0))
    assert float(model.diffrec.diffusion.betas[0]) != 1e-5  # As L-DiffRec.
    with pytest.raises(ValueError, match="'w_min' <= 'w_max'"):
        LTDiffRec(6, torch.tensor([0, 0, 0, 1, 1, 1]), w_min=2.0)


@pytest.mark.parametrize('preset', ['amazon-book', 'yelp'])
def test_ltdiffrec_presets_are_the_released_ones(preset):
    from diffkg_pyg.train import get_recipe
    recipe = get_recipe('ltdiffrec')(preset=preset)
    values = {**recipe.hparams, **recipe.preset_settings}
    expected = {'amazon-book': dict(noise_scale=0.7, lr=1e-4, w_min=0.1,
                                    batch_size=400),
                'yelp': dict(noise_scale=0.01, lr=5e-5, w_min=0.5,
                             batch_size=200)}[preset]
    assert {k: values[k] for k in expected} == expected
    assert values['autoencoder_lr'] == 5e-4 and values['lamda'] == 0.03


def test_ltdiffrec_ml1m_preset_is_ldiffrecs_with_default_weights():
    from diffkg_pyg.train import get_recipe
    lt = get_recipe('ltdiffrec')(preset='ml-1m')
    ld = get_recipe('ldiffrec')(preset='ml-1m')
    lt_values = {**lt.hparams, **lt.preset_settings}
    l_values = {**ld.hparams, **ld.preset_settings}
    assert {k: lt_values[k] for k in l_values} == l_values
    assert (lt_values['w_min'], lt_values['w_max']) == (0.1, 1.0)
