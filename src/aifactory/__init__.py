"""aifactory: the control plane of a federation of AI Factories."""

__version__ = "0.1.0"
