"""The 13 ShapeNet classes of the NMR / SoftRas reconstruction protocol, in its order."""

from __future__ import annotations

CLASSES: tuple[tuple[str, str], ...] = (
    ("02691156", "Airplane"),
    ("02828884", "Bench"),
    ("02933112", "Cabinet"),
    ("02958343", "Car"),
    ("03001627", "Chair"),
    ("03211117", "Display"),
    ("03636649", "Lamp"),
    ("03691459", "Loudspeaker"),
    ("04090263", "Rifle"),
    ("04256520", "Sofa"),
    ("04379243", "Table"),
    ("04401088", "Telephone"),
    ("04530566", "Watercraft"),
)
CLASS_IDS: tuple[str, ...] = tuple(c for c, _ in CLASSES)
CLASS_NAMES: dict[str, str] = dict(CLASSES)
