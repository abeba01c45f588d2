"""The command line, however the extension was installed.

- In a ComfyUI that has it in `custom_nodes` (git clone, ComfyUI-Manager, the
  Registry), with ComfyUI's own Python: `python custom_nodes/comfyui-sagemaker ARGS`.
  Python runs this file with the folder at the head of sys.path; the folder is
  taken off again (its nodes/ would shadow ComfyUI's `nodes`) and loaded as the
  package `comfyui_sagemaker` from this very file's folder, so neither another
  copy of the extension nor a package of that name installed in this Python
  runs instead. Local endpoints start their workers the same way.
- Where the package is installed (the worker image): `python -m comfyui_sagemaker ARGS`.
"""

if __package__:
    from .cli import main
else:
    import importlib.util
    import os
    import sys

    _here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _here]
    _spec = importlib.util.spec_from_file_location(
        "comfyui_sagemaker", os.path.join(_here, "__init__.py"), submodule_search_locations=[_here])
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["comfyui_sagemaker"] = _package
    _spec.loader.exec_module(_package)
    from comfyui_sagemaker.cli import main

raise SystemExit(main())
