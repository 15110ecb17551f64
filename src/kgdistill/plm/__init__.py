"""Pre-trained language models as trainable entity representations: local encoder folders and the tokenised
texts a bi-encoder is built from (see :mod:`kgdistill.models.bi_encoder`)."""

from kgdistill.plm.encoders import LoadedEncoder, build_encoder_module, encoder_folder, load_encoder
from kgdistill.plm.features import PLM_OPTIONS, PLMFeatures, TokenTable, plm_features

__all__ = [
    "PLM_OPTIONS",
    "LoadedEncoder",
    "PLMFeatures",
    "TokenTable",
    "build_encoder_module",
    "encoder_folder",
    "load_encoder",
    "plm_features",
]
