r"""The hyper-parameters of :class:`~diffkg_pyg.DiffKG`, declared once
(:func:`~diffkg_pyg.hyperparameters.hyperparameters`), grouped as its
constructor is, and the authors' per-dataset presets."""
from typing import Any, Dict, Tuple

from diffkg_pyg.hyperparameters import HyperParameter, Range, Space

__all__ = ['HYPERPARAMETERS', 'PRESETS', 'MAIN_VIEWS', 'VIEWS']

#: The authors' per-dataset settings (spec section 5), on top of the
#: defaults of :class:`~diffkg_pyg.DiffKG`. The authors also train
#: Alibaba-iFashion for 50 epochs instead of 25; the package's protocol
#: uses early stopping.
PRESETS: Dict[str, Dict[str, Any]] = {
    'default': {},
    'lastfm': dict(l2_weight=1e-5, kg_dropout=0.2, num_kg_layers=2,
                   kg_residual=0.0, kg_sample_size=-1, main_view='original',
                   keep_rate=0.1, ckgc_weight=0.01),
    'mind': dict(ckgc_weight=0.1, temperature=1.0, ssl_weight=1.0,
                 kg_dropout=0.2, kg_residual=1.0),
    'alibaba': dict(l2_weight=1e-6, ssl_weight=1.0, temperature=1.0),
}

#: The two choices of :obj:`main_view` (the authors' :obj:`cl_pattern` 0
#: and 1).
MAIN_VIEWS = ('denoised', 'original')
#: The two choices of :obj:`views`: the paper's training views, or those the
#: authors' published code trained.
VIEWS = ('paper', 'published-code')


def _cl_pattern(value: int) -> str:
    if value not in (0, 1):
        raise ValueError(f'cl_pattern must be 0 or 1 (got {value!r})')
    return MAIN_VIEWS[value]


def _dims(value: str) -> int:
    # The authors' --dims '[1000]': one hidden layer.
    text = str(value).strip().strip('[]').split(',')
    if len(text) != 1 or not text[0].strip().isdigit():
        raise ValueError(f'dims must be one hidden size such as [1000] (got '
                         f'{value!r}; the denoiser has one hidden layer)')
    return int(text[0])


#: The declarations, in the order of :class:`~diffkg_pyg.DiffKG`'s
#: signature.
HYPERPARAMETERS: Tuple[HyperParameter, ...] = (
    # The recommendation encoder:
    HyperParameter('embedding_dim', int, 'embedding size', doc=':math:`d`',
                   aliases=('latdim', ), range='[1, inf)'),
    HyperParameter('num_layers', int, 'user-item propagation layers',
                   doc='User-item propagation layers :math:`L`',
                   aliases=('gnn_layer', ), range='[0, inf)'),
    HyperParameter('num_kg_layers', int, 'relation-aware attention hops',
                   aliases=('layer_num_kg', ), range='[1, inf)'),
    HyperParameter('kg_dropout', float,
                   'dropout after every attention hop',
                   aliases=('mess_dropout', 'mess_dropout_rate'),
                   range='[0, 1)'),
    HyperParameter('kg_residual', float,
                   'residual weight of the KG encoder',
                   aliases=('res_lambda', )),
    HyperParameter('kg_sample_size', int, 'KG edges sampled per head '
                   'for the original view (-1: all)',
                   doc='KG edges sampled once per head for the original '
                   'view (:obj:`-1`: all)', aliases=('triplet_num', ),
                   range=Range('[1, inf)', also=(-1, )),
                   space=Space(choices=(5, 10, 20, -1))),
    # The objective:
    HyperParameter('l2_weight', float, 'L2 weight on the full tables',
                   doc=r':math:`\lambda_2`, on the full tables',
                   aliases=('reg', ), range='[0, inf)',
                   space=Space(1e-8, 1e-4, log=True)),
    HyperParameter('ssl_weight', float, 'weight of the InfoNCE terms',
                   doc=r':math:`\lambda_1`, the weight of the InfoNCE '
                   'terms', aliases=('ssl_reg', ), range='[0, inf)',
                   space=Space(choices=(0.0, 0.01, 0.1, 1.0))),
    HyperParameter('temperature', float, 'InfoNCE temperature',
                   doc=r'The InfoNCE temperature :math:`\tau`',
                   aliases=('temp', ), range='(0, inf)',
                   space=Space(0.05, 1.0, log=True)),
    HyperParameter('main_view', str,
                   'the KG of the main view and of evaluation; the other '
                   'feeds the second view', doc="The KG of the main view "
                   "and of evaluation: :obj:`'denoised'` or the sampled "
                   "original KG (:obj:`'original'`); the other feeds the "
                   'second view', choices=MAIN_VIEWS,
                   aliases=('cl_pattern', ), from_alias=_cl_pattern,
                   alias_type=int),
    HyperParameter('views', str, "the two training views: the paper's "
                   '(denoised and original KG) or those the published '
                   'code trained (the original KG twice)',
                   doc=":obj:`'paper'`: the two training views encode the "
                   "denoised and the sampled original KG; "
                   ":obj:`'published-code'`: both encode the sampled "
                   "original KG (independent dropout), as the authors' "
                   'published code trained; evaluation uses the '
                   ':obj:`main_view` KG either way', choices=VIEWS),
    # The denoiser and the diffusion:
    HyperParameter('denoiser_hidden_channels', int,
                   'hidden size of the denoiser', aliases=('dims', ),
                   range='[1, inf)',
                   from_alias=_dims, alias_type=str),
    HyperParameter('time_channels', int,
                   'size of the diffusion-step embedding',
                   doc=r'Size :math:`d_t` of the diffusion-step embedding',
                   aliases=('d_emb_size', )),
    HyperParameter('norm', bool, "L2-normalise the denoiser's input "
                   'rows'),
    HyperParameter('denoiser_dropout', float,
                   'input dropout of the denoiser', range='[0, 1)'),
    HyperParameter('diffusion_steps', int, 'diffusion steps',
                   doc='Diffusion steps :math:`T`',
                   aliases=('steps', ), range='[1, inf)',
                   space=Space(2, 50, log=True)),
    HyperParameter('noise_scale', float, 'noise scale of the schedule',
                   space=Space(1e-3, 0.5, log=True)),
    HyperParameter('noise_min', float,
                   'lower noise bound of the schedule'),
    HyperParameter('noise_max', float,
                   'upper noise bound of the schedule'),
    HyperParameter('sampling_steps', int, 'noise steps before the '
                   'rebuild (at most diffusion_steps)',
                   doc="Noise steps applied before the rebuild's reverse "
                   'process (at most :obj:`diffusion_steps`)',
                   range='[0, inf)'),
    HyperParameter('ckgc_weight', float, 'weight of the CKGC loss',
                   doc=r':math:`\lambda_0`, the weight of the CKGC loss',
                   aliases=('e_loss', ), range='[0, 1]',
                   space=Space(choices=(0.0, 0.01, 0.1, 0.5, 1.0))),
    HyperParameter('rebuild_k', int, 'edges kept per head by the '
                   'rebuild', range='[1, inf)',
                   space=Space(1, 10, log=True)),
    HyperParameter('keep_rate', float,
                   'keep probability of every rebuilt edge',
                   aliases=('keepRate', ), range='(0, 1]',
                   space=Space(0.2, 1.0)),
    HyperParameter('num_negatives', int, 'sampled non-edges per KG edge '
                   "in the denoiser's support", range='[1, inf)'),
    # How the diffusion is computed:
    HyperParameter('noise_columns', int, "columns carrying the "
                   "denoiser's input noise outside the support when N is "
                   'larger (-1: all, exact; 0: chosen from the device, '
                   'exact on a GPU with room, 16384 elsewhere; the '
                   'choice is recorded as noise_columns_used)',
                   doc="The denoiser's training input carries noise on all "
                   ':math:`N` entities; when :math:`N` is larger than this, '
                   'the noise outside the support is estimated from this '
                   "many columns per step, with the dense law's mean and "
                   'covariance (:obj:`-1`: always exact; :obj:`0`: chosen '
                   'from the device at the first step, or by '
                   ':meth:`choose_noise_columns`: exact on a CUDA GPU with '
                   'room for the exact path, 16,384 elsewhere, see '
                   ':func:`~diffkg_pyg.nn.kg_noise.choose_noise_columns`)',
                   range='[-1, inf)'),
    HyperParameter('noise_gradient', bool, "give the denoiser's input "
                   'columns outside the support the gradient of the '
                   "noise they carried (the dense method's; off: the "
                   "support's columns only, cheaper)",
                   doc="Give the denoiser's input table the gradient of the "
                   'noise its columns outside the support carried, as the '
                   "dense network's backward does (the sampled columns' "
                   'pathwise gradient when the noise is estimated); '
                   ":obj:`False` moves the support's columns only, which is "
                   'cheaper'),
    HyperParameter('use_compile', bool, "torch.compile the denoiser's "
                   'hot path', doc=":func:`torch.compile` the denoiser's "
                   'hot path (falls back to eager, logging once, where '
                   'compilation fails)', aliases=('compile', ),
                   compared=False),
)
