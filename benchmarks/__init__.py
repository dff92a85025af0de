"""The benchmark suite (issue 7): ``python -m benchmarks [NAME...] [--quick]`` or
``dynwf bench``; each module also runs as a plain script. See benchmarks/README.md."""
