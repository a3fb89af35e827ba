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

# Voxel IoU (x100) of the original SoftRas (silhouette supervision, 250k steps) on the NMR test
# split, per class (softras-spec.md section 7); the mean over the 13 classes is 62.3.
SOFTRAS_IOU: dict[str, float] = {
    "02691156": 65.6,
    "02828884": 49.8,
    "02933112": 69.0,
    "02958343": 74.2,
    "03001627": 52.9,
    "03211117": 60.6,
    "03636649": 45.8,
    "03691459": 65.6,
    "04090263": 68.7,
    "04256520": 68.1,
    "04379243": 46.2,
    "04401088": 82.3,
    "04530566": 61.0,
}
SOFTRAS_MEAN_IOU = 62.3
