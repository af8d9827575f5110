"""The local web demo of a trained detector (Gradio): an uploaded face image scored as predict.py scores it,
with the decision and a Grad-CAM overlay (``Judge``), on a page that fetches nothing (``build_page``);
app.py is its command."""
import importlib.util
from pathlib import Path

import torch

from fakedetect.data.images import IMAGE_EXTENSIONS
from fakedetect.data.normalization import Normalizer
from fakedetect.serve.predict import default_threshold, fake_probabilities, read_input

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
        from fakedetect.explain.grad_cam import grad_cam_maps, overlay

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
