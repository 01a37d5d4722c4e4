import numpy as np
import pytest

from diffkg_pyg.data import validation_mask


@pytest.mark.parametrize('val_ratio', [0.0, 0.1, 0.25])
@pytest.mark.parametrize('seed', [0, 1])
def test_validation_mask(val_ratio, seed):
    rng = np.random.default_rng(0)
    user = rng.integers(0, 50, 1000)
    mask = validation_mask(user, val_ratio, seed)
    assert mask.shape == user.shape and mask.dtype == bool
    count = np.bincount(user, minlength=50)
    held = np.bincount(user[mask], minlength=50)
    expected = np.minimum(np.floor(val_ratio * count + 0.5), count - 1)
    assert held.tolist() == expected.astype(int).tolist()
    assert np.array_equal(mask, validation_mask(user, val_ratio, seed))


def test_validation_mask_small_users_keep_all():
    user = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    mask = validation_mask(user, 0.1, seed=0)
    assert not mask.any()  # floor(0.1 * 4 + 0.5) = 0 for every user.
    mask = validation_mask(user, 0.2, seed=0)
    # floor(0.2 * n + 0.5) = 1 for n = 3, 4; the one-item user keeps it.
    assert np.bincount(user[mask], minlength=3).tolist() == [1, 0, 1]


def test_validation_mask_seed_changes_choice():
    user = np.repeat(np.arange(20), 10)
    assert not np.array_equal(validation_mask(user, 0.3, 0),
                              validation_mask(user, 0.3, 1))


@pytest.mark.parametrize('val_ratio', [-0.1, 1.0])
def test_validation_mask_bad_ratio(val_ratio):
    with pytest.raises(ValueError, match="'val_ratio' must lie in"):
        validation_mask(np.zeros(3, dtype=np.int64), val_ratio)
