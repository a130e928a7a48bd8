#!/usr/bin/env bash
# The paper's rate-accuracy figure, deployed and measured: accuracy (Fashion-MNIST, 1,000 labelled test images) or
# top-1 agreement with the teacher (the EfficientNet-Lite0 student, 12 held-out photos x 16 crops) against bytes per
# image, for the Entropic Student at each beta, CR+BQ, Singh et al.'s end-to-end baseline and JPEG/WebP/AVIF in front
# of the teacher, FP32 and INT8, with device time per method, on ONNX Runtime and OpenVINO.
#
#     scripts/compare_figures.sh [OUT]          # default OUT: out/compare
#
# Writes OUT/{fm,imagenet}-{onnxruntime,openvino}/compare.{md,json} and rate_accuracy.png; the bundles (exported
# once for both runtimes, INT8 calibrated on training images only) stay in OUT/bundles and are reused on a rerun.
# FIGURES=fm or FIGURES=imagenet runs one figure; BACKENDS="onnxruntime" one runtime; MAX_PHOTOS=N fewer photos.
set -euo pipefail
out=${1:-out/compare}
figures=${FIGURES:-"fm imagenet"}
backends=${BACKENDS:-"onnxruntime openvino"}
sc2edge=${SC2EDGE:-sc2edge}

fm_methods=(
  entropic_student_fashion_mnist_beta0.1 entropic_student_fashion_mnist_beta0.4 entropic_student_fashion_mnist_beta1.6
  cr_bq_fashion_mnist_b1ch cr_bq_fashion_mnist_b2ch cr_bq_fashion_mnist_b4ch
  singh_e2e_fashion_mnist_beta0.1 singh_e2e_fashion_mnist_beta0.4 singh_e2e_fashion_mnist_beta1.6
  jpeg webp avif
)
imagenet_methods=(
  entropic_student_efficientnet_lite0_beta1.6 entropic_student_efficientnet_lite0_beta3.2
  entropic_student_efficientnet_lite0_beta6.4
  cr_bq_efficientnet_lite0_b4ch cr_bq_efficientnet_lite0_b8ch
  singh_e2e_efficientnet_lite0_beta1.6 singh_e2e_efficientnet_lite0_beta3.2 singh_e2e_efficientnet_lite0_beta6.4
  jpeg webp avif:10/30/50/90  # AVIF encodes a 224 px crop in ~0.2 s here: four qualities, not seven
)

for figure in $figures; do
  for backend in $backends; do
    case $figure in
      fm) "$sc2edge" compare "${fm_methods[@]}" --dataset fashion-mnist --precision fp32,int8 --backend "$backend" \
            --bundles "$out/bundles" --out "$out/fm-$backend" ;;
      imagenet) "$sc2edge" compare "${imagenet_methods[@]}" --precision fp32,int8 --backend "$backend" \
            ${MAX_PHOTOS:+--max-images "$MAX_PHOTOS"} --bundles "$out/bundles" --out "$out/imagenet-$backend" ;;
      *) echo "unknown figure $figure (fm, imagenet)" >&2; exit 2 ;;
    esac
  done
done
