"""tbotan: from a model glass-former to trained predictions of its dynamics.

Kob–Andersen molecular dynamics (HOOMD-blue or a batched PyTorch engine), inherent structures,
isoconfigurational bond-breaking labels, and the T-BOTAN graph network of Bessho, Kawasaki and
Shiba (2026), chained by a Snakemake workflow.
"""

__version__ = "0.1.0"
