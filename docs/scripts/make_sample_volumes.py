"""Make the sample volumes of sample_data/ with their 3D ground truth, reproducibly.

    python docs/scripts/make_sample_volumes.py
    python docs/scripts/make_sample_volumes.py --ct-fields runs/tiny/ct_fields  # training

With ``--ct-fields FOLDER`` it writes training images instead: axial slices of CT volumes
of other seeds (100 on; the samples' seed is 6, the seeds 7 to 9 judged the propagation's
settings), every third slice holding an organ, under the soft-tissue window as a session
shows them (enlarged 3 times into the model input: the 160-pixel slice black-padded to
1024 / 3 pixels), with their organ labels; ``--count`` of them (default 400), for the third
stage of ``scripts/train_tiny.sh``.

- ``ct_volume.nii.gz`` (int16, Hounsfield units, 40 x 160 x 160 at 2.5 x 0.8 x 0.8 mm) and
  ``ct_volume_labels.nii.gz``: an abdomen-like body with 1 liver, 2 right kidney, 3 left
  kidney, 4 vertebral column.
- ``nuclei_volume.tif`` (uint16, 32 x 128 x 128 at 1.0 x 0.25 x 0.25 um, ImageJ) and
  ``nuclei_volume_labels.tif``: a confocal-like stack of 12 nuclei, one id each.

Every object is a 3D body (an ellipsoid whose surface a smooth random field makes
irregular), so the ground truth is consistent from slice to slice.
"""

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile
from scipy import ndimage

OUT = Path(__file__).resolve().parents[2] / "sample_data"
SEED = 6
N_NUCLEI = 12


def smooth_field(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """A smooth random field of unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std()


def blob(shape, centre, radii, wobble: np.ndarray, amount: float) -> np.ndarray:
    """An ellipsoid (voxel radii) with its surface moved by `amount` x `wobble`."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return np.sqrt(r2) + amount * wobble < 1.0


def ct_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = (40, 160, 160)
    wobble = smooth_field(rng, shape, (2, 6, 6))
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((yy - 82) / 62.0) ** 2 + ((xx - 80) / 74.0) ** 2 + 0 * zz < 1.0
    inner = ((yy - 82) / 55.0) ** 2 + ((xx - 80) / 67.0) ** 2 + 0 * zz < 1.0
    hu = np.full(shape, -1000.0)
    hu[body] = -100.0  # subcutaneous fat
    hu[inner] = 35.0  # soft tissue
    labels = np.zeros(shape, np.uint8)
    organs = [  # id, centre (z, y, x), radii (voxels), HU
        (1, (21, 60, 52), (14, 28, 30), 62.0),  # liver
        (2, (20, 100, 52), (7, 13, 9), 170.0),  # kidneys (contrast phase)
        (3, (19, 100, 108), (7, 13, 9), 175.0),
        (4, (20, 118, 80), (40, 10, 11), 420.0),  # vertebral column, through every slice
    ]
    for oid, centre, radii, value in organs:
        inside = blob(shape, centre, radii, wobble, 0.12) & inner & (labels == 0)
        labels[inside] = oid
        hu[inside] = value
    hu += 6.0 * smooth_field(rng, shape, (1, 2, 2))  # organ texture
    hu = ndimage.gaussian_filter(hu, (0.5, 0.8, 0.8)) + rng.normal(0.0, 12.0, shape)
    return np.round(hu).astype(np.int16), labels


def nuclei_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = (32, 128, 128)
    wobble = smooth_field(rng, shape, (1.5, 5, 5))
    labels = np.zeros(shape, np.uint16)
    signal = np.zeros(shape)
    centres: list[np.ndarray] = []
    for _ in range(10_000):  # candidates; enough to place the nuclei
        if len(centres) == N_NUCLEI:
            break
        c = np.array([rng.uniform(8, 24), rng.uniform(16, 112), rng.uniform(16, 112)])
        radii = np.array([rng.uniform(5, 7), rng.uniform(10, 14), rng.uniform(10, 14)])
        if any(np.hypot(*(c - o)[1:]) < 29 and abs((c - o)[0]) < 13 for o in centres):
            continue  # nuclei do not overlap
        centres.append(c)
        inside = blob(shape, c, radii, wobble, 0.1) & (labels == 0)
        labels[inside] = len(centres)
        signal[inside] = rng.uniform(700, 1400)
    texture = 1.0 + 0.15 * smooth_field(rng, shape, (1, 1.5, 1.5))
    depth = np.linspace(1.0, 0.7, shape[0])[:, None, None]  # signal fades with depth
    light = ndimage.gaussian_filter(signal * texture, (1.2, 0.8, 0.8)) * depth + 120.0
    stack = rng.poisson(light).astype(np.float64) + rng.normal(0.0, 8.0, shape)
    return np.clip(stack, 0, 65535).astype(np.uint16), labels


def write_nifti(path: Path, array: np.ndarray, spacing_zyx, origin_zyx) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_zyx[::-1])
    image.SetOrigin(origin_zyx[::-1])
    sitk.WriteImage(image, str(path), useCompression=True)


def write_stack(path: Path, array: np.ndarray, spacing_zyx) -> None:
    resolution = (1 / spacing_zyx[2], 1 / spacing_zyx[1])
    metadata = {"spacing": spacing_zyx[0], "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(
        path, array, imagej=True, resolution=resolution, metadata=metadata, compression="zlib"
    )


def write_ct_fields(folder: Path, count: int, first_seed: int = 100) -> None:
    """`count` CT slice fields, see the module's docstring."""
    folder.mkdir(parents=True, exist_ok=True)
    side = round(1024 / 3)  # a session's slice_scale of 3
    low, high = 40.0 - 200.0, 40.0 + 200.0  # the soft-tissue window, 400 / 40
    written, seed = 0, first_seed
    while written < count:
        hu, organs = ct_volume(np.random.default_rng(seed))
        for z in range(0, hu.shape[0], 3):
            if written == count:
                break
            if not organs[z].any():
                continue
            pixels = np.clip((hu[z].astype(np.float32) - low) / (high - low) * 255, 0, 255)
            image = np.zeros((side, side), np.uint8)
            image[: hu.shape[1], : hu.shape[2]] = np.round(pixels).astype(np.uint8)
            labels = np.zeros((side, side), np.uint16)
            labels[: hu.shape[1], : hu.shape[2]] = organs[z]
            tifffile.imwrite(folder / f"ct{seed:03d}_{z:02d}.tif", image)
            tifffile.imwrite(folder / f"ct{seed:03d}_{z:02d}_labels.tif", labels)
            written += 1
        seed += 1
    print(f"{written} CT slice fields (seeds {first_seed} to {seed - 1}) in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ct-fields", type=Path, help="write CT training slices here instead")
    parser.add_argument("--count", type=int, default=400, help="how many CT training slices")
    args = parser.parse_args()
    if args.ct_fields is not None:
        write_ct_fields(args.ct_fields, args.count)
        return
    rng = np.random.default_rng(SEED)
    hu, organs = ct_volume(rng)
    geometry = ((2.5, 0.8, 0.8), (-50.0, -64.0, -64.0))
    write_nifti(OUT / "ct_volume.nii.gz", hu, *geometry)
    write_nifti(OUT / "ct_volume_labels.nii.gz", organs, *geometry)
    stack, nuclei = nuclei_volume(rng)
    write_stack(OUT / "nuclei_volume.tif", stack, (1.0, 0.25, 0.25))
    write_stack(OUT / "nuclei_volume_labels.tif", nuclei, (1.0, 0.25, 0.25))
    for name in ("ct_volume", "ct_volume_labels", "nuclei_volume", "nuclei_volume_labels"):
        for path in OUT.glob(name + ".*"):
            print(f"{path.name}: {path.stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
