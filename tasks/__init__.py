"""Server tasks (classification, segmentation; detection next): outputs, post-processing, agreement,
metric and validation tolerances. Torch-free. ``create_task(manifest["task"])`` or ``bundle_task(bundle)``."""

from sc2edge.tasks.base import ImageSizes, OutputError, Outputs, OutputSpec, Prediction, Task, Tolerance
from sc2edge.tasks.classification import ClassificationTask, ClassPrediction
from sc2edge.tasks.registry import bundle_task, create_task, task_class, task_kinds

__all__ = ["ClassPrediction", "ClassificationTask", "ImageSizes", "OutputError", "OutputSpec", "Outputs", "Prediction",
           "Task", "Tolerance", "bundle_task", "create_task", "task_class", "task_kinds"]
