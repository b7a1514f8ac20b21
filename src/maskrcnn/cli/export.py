"""``maskrcnn export``: a weights file -> an ONNX model that runs with ONNX Runtime (``predict --backend onnxruntime``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (any image size, postprocessing included)",
        description="Export a maskrcnn checkpoint or a torchvision maskrcnn_resnet50_fpn file to ONNX. The graph takes "
        "one uint8 RGB image of any size (and a score threshold) and returns boxes, scores, labels and 28 x 28 mask "
        "probabilities, with resizing, NMS and box decoding inside; `maskrcnn predict --backend onnxruntime` runs it "
        "and pastes the masks. Class names and category ids travel in the file's metadata.",
    )
    p.add_argument("--weights", required=True, help="a maskrcnn checkpoint, a torchvision maskrcnn_resnet50_fpn file, or a name from `maskrcnn weights list` (downloaded once)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--output", required=True, type=Path, help="file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (default 17, at least 16)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from maskrcnn.errors import UserError
    from maskrcnn.export import DEFAULT_OPSET, export_onnx
    from maskrcnn.io import output_folder
    from maskrcnn.predict import Predictor
    from maskrcnn.zoo import resolve_weights

    if args.output.exists() and args.output.is_dir():
        raise UserError(f"--output {args.output} is a folder; give a file name such as {args.output / 'model.onnx'}")
    predictor = Predictor.from_file(resolve_weights(args.weights, purpose="predict"), device="cpu")
    output_folder(args.output.parent)
    report = export_onnx(predictor, args.output, opset=args.opset or DEFAULT_OPSET)
    print(
        f"exported {args.weights} -> {report['path']} ({report['bytes'] / 2**20:.1f} MiB, ONNX opset {report['opset']}, "
        f"{len(predictor.class_names)} classes) in {report['seconds']:.1f} s"
    )
    return 0
