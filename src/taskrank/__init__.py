"""taskrank: which source tasks to train on before your target task."""

from .models import BaseModel
from .tasks import Task, TaskError, TaskSpec, load_task

__version__ = "0.1.0"
__all__ = ["BaseModel", "Task", "TaskError", "TaskSpec", "load_task", "__version__"]
