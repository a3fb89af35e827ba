"""A tiny configuration for tests: a small network (the 642-vertex template), a few objects of two
classes of ``synthetic_shapes``, a handful of steps."""

import ml_collections

from configs import softras


def get_config() -> ml_collections.ConfigDict:
    config = softras.get_config()
    config.name = "tiny"
    config.dataset = "synthetic_shapes"
    config.dataset_kwargs = ml_collections.ConfigDict(
        {"train": 2, "val": 1, "test": 1, "seed": 0, "classes": ("02691156", "02958343")}
    )
    config.eval_split = "test"
    config.model.encoder_channels = (4, 8, 8)
    config.model.encoder_hidden = (32, 32, 16)
    config.model.decoder_hidden = (32, 32)
    config.model.param_init = "flax"  # as the quickstart: learns faster in a few steps
    config.batch_size = 4
    config.num_steps = 6
    config.learning_rate = 1e-3
    config.decay_step = 4
    config.log_every = 1
    config.checkpoint_every = 3
    config.keep_checkpoints = 2
    config.sample_every = 3
    config.num_samples = 2
    config.eval_batch_size = 24
    config.final_eval = False  # evaluated by recon.eval
    return config
