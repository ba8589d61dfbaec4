"""smilebot: the on-device package of the Smiling Bot v2.

The detection core (anchors, boxes, box_coder, matching, nms, preprocess) is plain
NumPy and is imported unchanged by the desktop tools, so training and serving share
one implementation. Nothing here imports TensorFlow.
"""

__version__ = "0.1.0"
