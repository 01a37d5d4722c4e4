import numpy as np

__all__ = ['validation_mask']


def validation_mask(user: np.ndarray, val_ratio: float = 0.1,
                    seed: int = 0) -> np.ndarray:
    r"""Selects a seeded per-user hold-out of interactions for validation.

    Every user :math:`u` with :math:`n_u` interactions gives
    :math:`\lfloor \rho \, n_u + 1/2 \rfloor` of them (chosen uniformly at
    random) to validation, where :math:`\rho` is :obj:`val_ratio`; users for
    whom that is zero (too few items) keep all of theirs for training, and
    every user keeps at least one training interaction.

    Args:
        user (numpy.ndarray): The user of every interaction,
            shape :obj:`[num_pairs]`.
        val_ratio (float, optional): The fraction of each user's interactions
            to hold out, in :obj:`[0, 1)`. (default: :obj:`0.1`)
        seed (int, optional): The seed of the random choice.
            (default: :obj:`0`)

    Returns:
        A boolean mask of shape :obj:`[num_pairs]`, :obj:`True` for the
        validation interactions.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"'val_ratio' must lie in [0, 1) (got {val_ratio})")
    num_pairs = user.shape[0]
    mask = np.zeros(num_pairs, dtype=bool)
    if num_pairs == 0 or val_ratio == 0.0:
        return mask
    rng = np.random.default_rng(seed)
    # A random order, then a stable sort by user: each user's interactions
    # end up contiguous and in random order.
    perm = rng.permutation(num_pairs)
    perm = perm[np.argsort(user[perm], kind='stable')]
    sorted_user = user[perm]
    _, start, count = np.unique(sorted_user, return_index=True,
                                return_counts=True)
    num_val = np.floor(val_ratio * count + 0.5).astype(np.int64)
    num_val = np.minimum(num_val, count - 1)
    rank = np.arange(num_pairs) - np.repeat(start, count)
    mask[perm] = rank < np.repeat(num_val, count)
    return mask
