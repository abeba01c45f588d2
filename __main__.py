"""`python -m comfyui_sagemaker ...`"""

from .cli import main

raise SystemExit(main())
