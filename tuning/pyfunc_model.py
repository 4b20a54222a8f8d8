"""Model code of the promoted pVAE (MLflow "models from code": no pickled Python object).

``mlflow.pyfunc.log_model(python_model=<this file>, ...)`` stores this file with the model; loading the
model runs it, with ``models/`` and ``tuning/`` on the path from the model's ``code_paths``.
"""
from mlflow.models import set_model

from tuning.pyfunc import PVAEPyfunc

set_model(PVAEPyfunc())
