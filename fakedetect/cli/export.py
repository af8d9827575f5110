"""The command of serve/export.py: ``python export.py CHECKPOINT --format onnx|torchscript -o FILE``; its
--help is that module's description of the exported files."""
import sys
from pathlib import Path

from fakedetect.cli.common import ArgumentParser, exits_on_error
from fakedetect.io.files import check_output_path
from fakedetect.serve import export
from fakedetect.serve.export import FORMATS, INPUT_DTYPES, export_checkpoint


def parse_args(argv=None):
    parser = ArgumentParser(description=export.__doc__)
    parser.add_argument("checkpoint", help="a checkpoint written by train_main.py (checkpoints/*.pt)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx (run by onnxruntime) or torchscript")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the file to write (.onnx for onnx; e.g. .torchscript.pt for torchscript)")
    parser.add_argument("--input", default="uint8", choices=INPUT_DTYPES,
                        help="onnx only: the pixel type the model takes, uint8 0..255 or float32 0..1 (default: uint8)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE when it exists")
    args = parser.parse_args(argv)
    output = Path(args.output)
    check_output_path(parser, "-o", output, [args.checkpoint])
    if args.format == "onnx" and output.suffix.lower() != ".onnx":
        parser.error(f"-o {output}: an ONNX file must end in .onnx (predict.py knows it by that); "
                     f"e.g. -o {output.with_suffix('.onnx')}")
    if args.format == "torchscript" and output.suffix.lower() == ".onnx":
        parser.error(f"-o {output}: .onnx names an ONNX file; give the TorchScript file another name "
                     f"(e.g. {output.with_suffix('.torchscript.pt')}) or pass --format onnx")
    if args.format == "torchscript" and args.input != "uint8":
        parser.error("--input is for onnx only: the TorchScript model takes uint8 and float32 images alike; drop it")
    if output.exists() and not args.overwrite:
        parser.error(f"-o {output}: exists; pass --overwrite to replace it or choose another path")
    return args


@exits_on_error()
def main(argv=None):
    args = parse_args(argv)
    metadata = export_checkpoint(args.checkpoint, args.output, args.format, args.input)
    print(f"wrote {args.output}: {args.format} model of {metadata['model_name']}, input N x 3 x H x W "
          f"{metadata['input_dtype']}, output P(fake), threshold {metadata['threshold']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
