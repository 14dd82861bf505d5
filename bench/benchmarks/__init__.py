"""asv benchmarks of gru_fast (see bench/README.md).

Modules: ``bench_functional`` (gru_forward / gru_backward), ``bench_lengths``
(variable lengths versus a padded batch), ``bench_layer`` (the GRU layer:
stacked, bidirectional, step) and ``bench_reference`` (the NumPy oracle on
small shapes).  Every benchmark is class based with ``params``/``param_names``.
"""
