"""The shading-supervised variant: a deeper encoder (two extra 5x5 stride-1 convolutions),
per-face colours, and a lit colour render compared with the input image in the loss."""

import ml_collections

from configs import softras


def get_config() -> ml_collections.ConfigDict:
    config = softras.get_config()
    config.name = "shading"
    config.model.shading = True
    config.model.lambda_color = 1.0
    return config
