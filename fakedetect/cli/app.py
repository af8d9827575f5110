"""A local web demo of a trained detector: drop a face image on a page and see P(fake), the
decision at the checkpoint's threshold and where the evidence is (a Grad-CAM overlay).

    python app.py checkpoints/demo_fakes_SimpleNet_AdamW.pt           # then open http://127.0.0.1:7860
    python app.py CHECKPOINT --port 8000
    python app.py CHECKPOINT --host 0.0.0.0                           # other machines too (only when asked)
    python app.py CHECKPOINT --share                                  # a public gradio.live link (only when asked)

The page (Gradio) serves on 127.0.0.1 unless ``--host`` or ``--share`` asks for more. An image
is scored as ``predict.py`` scores it (resized to 256x256, P(fake), called fake at P(fake) >=
the checkpoint's validation EER threshold, or ``--threshold``); the overlay is the Grad-CAM of
the fake class, as ``predict.py --cam`` draws it (shown where the grad-cam package is installed).
Uploads over ``--max-upload-mb`` are refused by the server; only images (.jpg .jpeg .png .bmp
.webp) are scored, and anything else gets a message on the page. Videos are not taken yet.
Nothing is fetched from the internet: the page uses the system's fonts.
"""
import importlib.util
import sys
from pathlib import Path

from fakedetect.cli.common import ArgumentParser, add_device_flag, exits_on_error, resolve_device
from fakedetect.models.registry import load_trained_model
from fakedetect.serve.app import LOCAL_FONTS, Judge, build_page


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="a detector checkpoint written by train_main.py (checkpoints/RUN.pt)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 = every network)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="call an image fake when P(fake) >= this (default: the checkpoint's validation EER threshold)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                        help="largest upload the server accepts (default: 20)")
    add_device_flag(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1..65535 (got {args.port})")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (got {args.threshold})")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb must be > 0 (got {args.max_upload_mb})")
    if importlib.util.find_spec("gradio") is None:
        parser.error("app.py needs the gradio package: pip install 'gradio>=6,<7'")
    args.device = resolve_device(args.device or "cpu", parser)
    return args


@exits_on_error()
def main(argv=None):
    args = parse_args(argv)
    model, checkpoint = load_trained_model(args.checkpoint, args.device)
    import gradio as gr

    title = f"{checkpoint['model_name']} trained on {checkpoint.get('dataset', '?')} ({Path(args.checkpoint).name})"
    page = build_page(Judge(model, checkpoint, args.device, args.threshold), title)
    where = "this machine only" if args.host == "127.0.0.1" and not args.share else "reachable beyond this machine"
    print(f"serving {title} on http://{args.host}:{args.port} ({where}); Ctrl-C stops it", flush=True)
    page.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False, quiet=True,
                max_file_size=f"{args.max_upload_mb:g}mb", footer_links=[],
                theme=gr.themes.Default(font=LOCAL_FONTS, font_mono=["monospace"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
