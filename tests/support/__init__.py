"""Helpers that several test modules share (fixtures stay in tests/conftest.py).

Imported as `support.NAME`: pytest puts tests/ on sys.path for conftest.py, and bench/chaos.py
does the same. A test module never imports another test module (tests/test_layers.py checks).
"""
