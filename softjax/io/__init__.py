"""Mesh file input / output: Wavefront OBJ + MTL reading and writing, texture images.

``obj`` (load / save), ``obj_parser`` (OBJ statements), ``mtl`` (materials), ``sampling``
(image lookups), ``texels`` (per-face texel layout), ``bake`` (colours into textures),
``uv_texture`` (colours kept as one image + corner uvs, ``texture_type='uv'``), ``atlas``
(textures into one image) and ``texture_files`` (the PNG / MTL / ``vt`` of a written OBJ).
"""

from softjax.io.errors import ObjError, ObjWarning
from softjax.io.obj import load_obj, save_obj
from softjax.io.sampling import sample_image
from softjax.io.texels import texel_barycentrics

__all__ = [
    "ObjError",
    "ObjWarning",
    "load_obj",
    "sample_image",
    "save_obj",
    "texel_barycentrics",
]
