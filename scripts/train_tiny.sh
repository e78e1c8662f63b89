#!/usr/bin/env bash
# Train the default model `tiny` from scratch: the recipe of the shipped weights
# (docs/training.md). Resumable: run it again and each stage continues from its last
# checkpoint. Usage: bash scripts/train_tiny.sh [RUN_FOLDER] (default runs/tiny), in the
# environment the README's commands set up, with ../shared beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/tiny}
real=../shared/data/microscopy/dsb2018_crop

# Stage 1: encoder and decoder on 256-pixel crops (synthetic, and the one real image).
tilesam train --out "$out/crops" --base scratch \
    --synthetic nuclei,nuclei,nuclei,cells,cells,ct,aerial \
    --images "$real" --real-fraction 0.2 --crop 256 --batch-size 4 --objects-per-image 6 \
    --iterations 1 --mosaic 0.5 --epochs 40 --steps-per-epoch 100 --lr 1e-3 --loss bce --seed 0

# Stage 2: the decoder on whole embedded images, on the windows inference decodes.
tilesam synthesize --out "$out/fields_data" --kinds nuclei,nuclei,cells,ct,aerial \
    --count 200 --seed 1
tilesam train --out "$out/fields" --base "$out/crops/model.pt" --images "$out/fields_data" \
    --synthetic none --freeze-encoder --batch-size 4 --objects-per-image 2 --iterations 2 \
    --lr 1e-4 --loss-margin 0.5 --epochs 25 --steps-per-epoch 100 --seed 0

# Stage 3: the decoder again, on stage 2's images and CT slices as a session shows them
# (other seeds of the sample volumes' generator), 25 minutes (3912 steps on our machine).
python docs/scripts/make_sample_volumes.py --ct-fields "$out/ct_fields" --count 400
mkdir -p "$out/ct_mix"
ln -sf "$(realpath "$out/fields_data")"/* "$(realpath "$out/ct_fields")"/* "$out/ct_mix/"
tilesam train --out "$out/ct" --base "$out/fields/model.pt" --images "$out/ct_mix" \
    --synthetic none --freeze-encoder --batch-size 4 --objects-per-image 2 --iterations 2 \
    --lr 1e-4 --loss-margin 0.5 --epochs 100 --steps-per-epoch 100 --max-minutes 25 --seed 0

# Stage 4: the decoder again, on the same images, a fifth of its prompts a box with a click
# inside (what slice-to-slice propagation sends), 22 minutes (about 4000 steps on our machine).
tilesam train --out "$out/box_points" --base "$out/ct/model.pt" --images "$out/ct_mix" \
    --synthetic none --freeze-encoder --batch-size 4 --objects-per-image 2 --iterations 2 \
    --lr 1e-4 --loss-margin 0.5 --epochs 100 --steps-per-epoch 100 --max-minutes 22 \
    --box-points 0.5 --seed 0

cp "$out/box_points/model.pt" "$out/model.pt"
echo "weights: $out/model.pt (to ship: copy to src/tilesam/weights/tiny.pt, register its sha256)"

# Stage 5: the instance head (segment everything's instance and prompts modes) on the
# frozen model's embeddings of 240 more synthetic nuclei fields and the DSB crop, 1500 steps
# (about 25 minutes on our machine). To ship: copy to src/tilesam/weights/
# tiny_instance_head.pt and register its sha256 in models/instance_head.py.
tilesam synthesize --out "$out/head_data" --kinds nuclei --count 240 --seed 21
ln -sf "$(realpath "$real")/image.tif" "$out/head_data/dsb_crop.tif"
ln -sf "$(realpath "$real")/labels.tif" "$out/head_data/dsb_crop_labels.tif"
tilesam train --instance-head --out "$out/head" --base "$out/model.pt" \
    --images "$out/head_data" --batch-size 8 --lr 1e-3 --epochs 1 --steps-per-epoch 1500 \
    --seed 0
echo "instance head: $out/head/instance_head.pt"
