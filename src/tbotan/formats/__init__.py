"""Files between the stages (docs/formats.md): what they hold and how they are written.

- :mod:`~tbotan.formats.io_utils`: atomic writes, write-failure errors, JSON/HDF5 helpers.
- :mod:`~tbotan.formats.dataset`: the dataset HDF5 files and their provenance.
- :mod:`~tbotan.formats.predictions`: the predictions HDF5 files.
- :mod:`~tbotan.formats.model_file`: ``model.pt`` (hyper-parameters, weights, training record).
"""
