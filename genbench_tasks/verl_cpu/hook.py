"""Imported by verl itself (``VERL_USE_EXTERNAL_MODULES``) in every verl process: applies the CPU layer."""

from genbench_tasks.verl_cpu import install

install()
