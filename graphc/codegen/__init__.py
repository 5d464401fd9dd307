"""Lowering a scheduled graph to source code (C for now)."""
