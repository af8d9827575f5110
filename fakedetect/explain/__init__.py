"""Where a detector looks: gradient saliency (saliency) and Grad-CAM (grad_cam) maps of batches, and maps
scored against manipulation masks (scores). Tensors in, maps out; the figures are in analysis."""
