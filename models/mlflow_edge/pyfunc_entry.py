"""MLflow 'models from code' entry: logged with the model instead of a pickled object.

It imports only the model packages (models/mlflow_edge/packaging.py lists them and their requirements), so a
version loads in an environment that has just the version's own code and `requirements.txt`.
"""

import mlflow

from commuter_badge.models.mlflow_edge.packaging import PyfuncCommuterModel

mlflow.models.set_model(PyfuncCommuterModel())
