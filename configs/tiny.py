"""A tiny configuration for tests: the quickstart (``synthetic_shapes``, Flax's initialisation,
no final evaluation) with a small network (the 642-vertex template), a few objects of two
classes and a handful of steps."""

import ml_collections

from configs import quickstart


def get_config() -> ml_collections.ConfigDict:
    config = quickstart.get_config()
    config.update(
        name="tiny",
        dataset_kwargs=ml_collections.ConfigDict(
            {"train": 2, "val": 1, "test": 1, "seed": 0, "classes": ("02691156", "02958343")}
        ),
        batch_size=4,
        num_steps=6,
        learning_rate=1e-3,
        decay_step=4,
        log_every=1,
        checkpoint_every=3,
        keep_checkpoints=2,
        sample_every=3,
        num_samples=2,
        eval_batch_size=24,
    )
    config.model.update(
        encoder_channels=(4, 8, 8), encoder_hidden=(32, 32, 16), decoder_hidden=(32, 32)
    )
    return config
