"""What a run is made of, before any computation: the paper's numbers
(``paper``), class and dataset names (``labels``, ``dataset_names``), the
training recipes (``recipe``) and the checks and arguments of config files
(``config_lib``). Nothing here imports JAX or any other layer."""
