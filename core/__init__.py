"""The shared bottom layer every stage imports (and which imports no stage).

config (flat config dataclasses, YAML loading with unknown-key errors), io (atomic writes),
cli (verb dispatch of ``python -m <stage>``), tracking (MLflow tracking URI, client, experiment),
properties (the property vocabulary: porosity, k_ij components, tensor indices) and checkpoint
(the checkpoint folder format and its ``kind``). Nothing here imports torch, Ray or a stage.
"""
