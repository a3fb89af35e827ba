"""SoftRas's single-view reconstruction (silhouette supervision) on ShapeNet (NMR renderings).

``python -m recon.train --config configs/softras.py --workdir runs/softras`` trains the
original protocol (``docs/reconstruction.md``): batch 64, 250k steps, Adam 1e-4,
learning rate and sigma times 0.3 from step 150k, lambda_lap 5e-3, lambda_flat 5e-4. Needs the
NMR ShapeNet files (see the README's datasets section).
"""

import ml_collections

from recon import protocol


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "softras"

    # data
    config.dataset = "shapenet_nmr"
    config.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS default
    config.manual_dir = ml_collections.config_dict.placeholder(str)  # shapenet_nmr npz files
    config.dataset_kwargs = ml_collections.ConfigDict()  # builder options (classes, sizes, seed)
    config.train_split = "train"
    config.eval_split = "val"
    # None: in memory when the split takes at most half the available RAM, else read on demand
    # from a decoded, memory-mapped view cache built once next to the dataset
    config.in_memory = ml_collections.config_dict.placeholder(bool)
    config.sampling = "class"  # SoftRas: random class, then random object
    config.image_size = protocol.IMAGE_SIZE

    # model
    config.model = ml_collections.ConfigDict()
    config.model.template_level = 3  # icosphere: 642 vertices, 1280 faces
    config.model.encoder_channels = (64, 128, 256)
    config.model.encoder_hidden = (1024, 1024, 512)
    config.model.decoder_hidden = (1024, 2048)
    config.model.shading = False
    # fresh parameters as PyTorch draws them (the original's start): U(+-1/sqrt(fan_in)) for
    # weights and biases; 'flax': LeCun normal weights, zero biases
    config.model.param_init = "pytorch"
    config.model.lambda_color = 1.0  # shading variant only

    # renderer and loss
    config.sigma_val = protocol.SIGMA_VAL
    config.gamma_val = protocol.GAMMA_VAL
    config.dist_eps = protocol.DIST_EPS
    # soft_rasterize's backend: None = $SOFTJAX_BACKEND, else 'auto' (on a GPU the Pallas kernels
    # once they pass their self-check, else XLA); 'xla' or 'pallas' to force one
    config.backend = ml_collections.config_dict.placeholder(str)
    config.lambda_laplacian = 5e-3
    config.lambda_flatten = 5e-4

    # optimisation
    config.batch_size = 64  # objects per step (global, over all devices and hosts)
    config.num_steps = 250_000
    config.learning_rate = 1e-4
    config.beta1 = 0.9
    config.beta2 = 0.999
    config.decay_step = 150_000  # lr and sigma are multiplied by decay_factor from this step
    config.decay_factor = 0.3
    config.seed = 0

    # bookkeeping
    config.log_every = 50  # metrics.jsonl, train_loss.png
    config.checkpoint_every = 5_000
    config.keep_checkpoints = 3
    config.sample_every = 5_000  # input / silhouette PNG pair and a demo OBJ
    config.num_samples = 8
    config.eval_every = 0  # voxel IoU on eval_split every N steps during training (0: never)
    config.final_eval = True  # voxel IoU on eval_split at the end of training
    config.eval_max_objects = 0  # per class (0: all)
    config.eval_batch_size = 96
    config.prefetch = 2
    config.distributed = False  # call jax.distributed.initialize() (several hosts)
    return config
