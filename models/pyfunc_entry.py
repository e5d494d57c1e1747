"""MLflow 'models from code' entry: logged with the model instead of a pickled object."""

import mlflow

from commuter_badge.models.registry import PyfuncCommuterModel

mlflow.models.set_model(PyfuncCommuterModel())
