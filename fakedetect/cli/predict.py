"""Score images with a trained detector: the probability that each one is fake, and the decision.

    python predict.py checkpoints/demo_fakes_SimpleNet_AdamW.pt photo.jpg my_folder/ 'shots/*.png'

Inputs are image files, folders (searched recursively for .jpg .jpeg .png .bmp .webp; a
dataset split gives its real/ and fake/ images only) and glob patterns (quote them; ``**`` recurses). Every image is resized to 256x256 as in
training, or, with ``--crop-faces``, its largest face is cropped first (see
fakedetect/faces/detection.py). An image is called fake when its fake probability is at least the
threshold: by default the checkpoint's, i.e. the equal-error-rate point on the validation
split chosen at training time; ``--threshold`` overrides it.

The checkpoint can also be a model written by export.py (``.onnx``, run by onnxruntime, or
TorchScript), scored the same way with the threshold stored in it (no ``--cam``).

``--ensemble CKPT`` (repeatable) adds checkpoints: P(fake) is then the sigmoid of the mean of
their fake log-odds (the mean logit, as ensemble_table.py judges it), and the default threshold
the mean of their thresholds in log-odds; ensemble_table.py prints the ensemble's own
validation EER threshold to pass as ``--threshold``. ``--tta`` also scores each image's mirror
image and averages the log-odds.

Prints a table; ``--csv``/``--json`` also write it to files; ``--cam DIR`` saves a Grad-CAM
overlay per image (evidence for "fake", as grad_cam_analysis.py draws it). Unreadable or
missing inputs, and images without a face under ``--crop-faces``, are reported and skipped.
Exit code: 0 when every input was scored, 1 when any failed, the checkpoint is bad or an output
could not be written (disk full), 2 for a usage error.
"""
import sys

from fakedetect.cli.common import ArgumentParser, exits_on_error, resolve_device
from fakedetect.faces.detection import FaceCropper, FaceDetectorError
from fakedetect.io.files import Inputs, check_distinct_outputs, check_output_path, write_json
from fakedetect.serve.export import is_exported_model
from fakedetect.serve.predict import (CamWriter, default_threshold, expand_inputs, format_table, is_video,
                                      load_detector, predict, predict_videos, write_csv)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="a checkpoint written by train_main.py (checkpoints/*.pt), "
                                           "or a model written by export.py (.onnx, TorchScript)")
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursive) or quoted glob patterns")
    parser.add_argument("--threshold", type=float, default=None,
                        help="call an image fake when P(fake) >= this (default: the checkpoint's validation EER threshold)")
    parser.add_argument("--ensemble", metavar="CHECKPOINT", action="append", default=[],
                        help="also score with this checkpoint (repeatable): P(fake) is then the sigmoid of the "
                             "checkpoints' mean fake log-odds")
    parser.add_argument("--tta", action="store_true",
                        help="also score each image's mirror image and average the log-odds (training flips at random)")
    parser.add_argument("--crop-faces", action="store_true", help="score the largest detected face instead of the whole image")
    parser.add_argument("--min-face", type=int, default=32, help="smallest face side in pixels for --crop-faces (default: 32)")
    parser.add_argument("--frames", type=int, default=16, help="evenly spaced frames scored per video (default: 16)")
    parser.add_argument("--fps", type=float, default=None,
                        help="score this many frames per second of each video instead of --frames")
    parser.add_argument("--per-frame", action="store_true", help="also give a row per scored frame of each video")
    parser.add_argument("--cam", metavar="DIR", default=None, help="also save a Grad-CAM overlay per image in DIR")
    parser.add_argument("--csv", metavar="FILE", default=None, help="also write the results as CSV")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    parser.add_argument("-b", "--batch-size", type=int, default=32, help="images per batch (default: 32)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (got {args.threshold})")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1 (got {args.batch_size})")
    if args.frames < 1:
        parser.error(f"--frames must be >= 1 (got {args.frames})")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"--fps must be > 0 (got {args.fps})")
    args.device = resolve_device(args.device, parser)
    inputs = Inputs([args.checkpoint, *args.ensemble, *args.inputs])  # the input folders are walked once
    check_output_path(parser, "--csv", args.csv, inputs)
    check_output_path(parser, "--json", args.json, inputs)
    check_output_path(parser, "--cam", args.cam, inputs, folder=True)
    check_distinct_outputs(parser, [("--csv", args.csv), ("--json", args.json), ("--cam", args.cam)])
    if args.cam and any(is_exported_model(path) for path in [args.checkpoint, *args.ensemble]):
        parser.error("--cam needs checkpoints: an exported model has no gradients to explain; "
                     "pass the .pt checkpoint it was exported from")
    return args


@exits_on_error(FaceDetectorError)
def main(argv=None):
    args = parse_args(argv)
    loaded = [load_detector(path, args.device) for path in [args.checkpoint, *args.ensemble]]
    members = [(model, checkpoint["normalization"]) for model, checkpoint in loaded]
    checkpoints = [checkpoint for _, checkpoint in loaded]
    if args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    else:
        threshold, source = default_threshold(checkpoints)
    files, failures = expand_inputs(args.inputs)
    videos = [path for path in files if is_video(path)]
    cropper = None
    if args.crop_faces or videos:  # a video's frames are always face crops, as build_faces_dataset.py makes them
        cropper = FaceCropper(min_face=args.min_face)
    cams = CamWriter(members, args.device, args.cam) if args.cam else None

    images = [path for path in files if not is_video(path)]
    results = predict(members, images, threshold, args.device, args.batch_size, cropper if args.crop_faces else None,
                      cams, args.tta, progress=not args.no_progress) if images else []
    results += predict_videos(members, videos, threshold, cropper, args.frames, args.fps, args.device, args.batch_size,
                              cams, args.tta, args.per_frame, progress=not args.no_progress)
    results += [{"file": item, "fake_probability": None, "decision": None, "face_box": None, "cam": None,
                 "error": reason} for item, reason in failures]
    print(format_table(results))
    whole = [row for row in results if row.get("frame") is None]  # a frame without a face fails only its video
    scored = [row for row in whole if row["error"] is None]
    failed = len(whole) - len(scored)
    fakes = sum(row["decision"] == "fake" for row in scored)
    scorer = f"an ensemble of {len(members)} checkpoints" if len(members) > 1 else "one checkpoint"
    print(f"{len(scored)} scored ({fakes} fake, {len(scored) - fakes} real) by {scorer}{' with flip TTA' * args.tta} "
          f"at threshold {threshold:.4f} ({source}); {failed} failed"
          + (f"; Grad-CAM overlays in {args.cam}" if cams and scored else ""))
    if args.csv:
        write_csv(args.csv, results)
    if args.json:
        write_json(args.json, {"checkpoint": str(args.checkpoint), "model": checkpoints[0]["model_name"],
                               "trained_on": checkpoints[0].get("dataset"),
                               "ensemble": [{"checkpoint": str(path), "model": member["model_name"],
                                             "trained_on": member.get("dataset")}
                                            for path, member in zip(args.ensemble, checkpoints[1:])],
                               "tta": args.tta, "threshold": threshold,
                               "threshold_source": source, "crop_faces": args.crop_faces, "results": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
