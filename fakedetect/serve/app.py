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

import torch

from cli import ArgumentParser, add_device_flag, exits_on_error
from faces_dataset import IMAGE_EXTENSIONS, Normalizer
from models import load_trained_model, resolve_device
from predict import default_threshold, fake_probabilities, read_input

LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # Gradio's default theme would fetch Google fonts
ACCEPTED = ", ".join(IMAGE_EXTENSIONS)
PROMPT = "Drop a face image above to score it."


class Judge:
    """Scores one uploaded file with a detector and explains the score."""

    def __init__(self, model, checkpoint, device, threshold=None):
        self.model, self.device = model, device
        self.normalization = checkpoint["normalization"]
        self.threshold, self.source = ((threshold, "--threshold") if threshold is not None
                                       else default_threshold([checkpoint]))
        self.explains = importlib.util.find_spec("pytorch_grad_cam") is not None

    def __call__(self, path):
        """(verdict in Markdown, the image as scored or None, its Grad-CAM overlay or None) of the file at ``path``."""
        if path is None:
            return PROMPT, None, None
        path = Path(path)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            return f"**{path.name}** is not an image this demo takes; drop a {ACCEPTED} file.", None, None
        array, _, error = read_input(path)
        if error is not None:  # e.g. "cannot read image (...)", "image too large (...)"; the upload's temporary path hidden
            reason = error.split("; ")[0].replace(str(path), path.name)
            return f"**{path.name}**: {reason}; drop a {ACCEPTED} file.", None, None
        images = torch.from_numpy(array[None])
        with torch.inference_mode():
            score = float(fake_probabilities([(self.model, self.normalization)], images, self.device)[0])
        decision = "fake" if score >= self.threshold else "real"
        verdict = (f"## Verdict: {decision.upper()}\n\nP(fake) = **{score:.3f}**; called fake at P(fake) >= "
                   f"{self.threshold:.3f} ({self.source}).")
        scored = array.transpose(1, 2, 0)
        if not self.explains:
            return verdict + "\n\n(No Grad-CAM overlay: pip install 'grad-cam>=1.5,<2' for one.)", scored, None
        return verdict, scored, self.overlay(images)

    def overlay(self, images):
        """The image under the Grad-CAM map of the fake class (H x W x 3 uint8)."""
        from grad_cam_analysis import grad_cam_maps, overlay

        heat = grad_cam_maps(Normalizer(*self.normalization, self.device)(images.to(self.device)), self.model, [1])
        return overlay(images[0].permute(1, 2, 0).numpy(), heat[0])


def build_page(judge, title):
    """The Gradio page: a file drop, the verdict and the overlay."""
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# Real or fake face?\n\n{title}. Drop a face image ({ACCEPTED}); it is resized to 256x256 "
                    "and scored on this machine.")
        upload = gr.File(label="Face image", type="filepath", file_types=list(IMAGE_EXTENSIONS), elem_id="upload")
        verdict = gr.Markdown(PROMPT, elem_id="verdict")
        with gr.Row():
            scored = gr.Image(label="As scored (256x256)", type="numpy", interactive=False, elem_id="scored")
            overlay = gr.Image(label="Grad-CAM of the fake class (red: evidence for fake)", type="numpy",
                               interactive=False, elem_id="overlay")
        upload.change(judge, inputs=upload, outputs=[verdict, scored, overlay])
    return page


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
