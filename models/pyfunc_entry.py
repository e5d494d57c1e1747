"""MLflow 'models from code' entry: logged with the model instead of a pickled object."""

import mlflow

from models.registry import PyfuncCommuterModel

mlflow.models.set_model(PyfuncCommuterModel())
