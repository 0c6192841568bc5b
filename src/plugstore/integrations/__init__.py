"""Adapters that make plugstore a drop-in for existing frameworks (Errbot, Salmon, ...).

Each adapter imports its framework only in the module the framework itself loads, so
importing plugstore (or these packages) never imports a framework.
"""
