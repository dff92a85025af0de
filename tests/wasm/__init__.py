"""Tests of the wasm isolate backend (marker ``wasm``)."""
