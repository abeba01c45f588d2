"""The gateway: the run APIs (the template API and the Comfy API v2) without ComfyUI.

`python <extension folder> gateway` (or `python -m comfyui_sagemaker gateway`) serves them from the
configuration alone: the store (S3 in production; a folder store too) and the endpoints (SageMaker; a
ComfyUI's local endpoints on the same machine too, read from its configuration folder). It keeps no state
of its own: every run, asset and idempotency key is in the store, so any number of replicas behind a load
balancer serve the same runs. It is another face of the same services as the extension's routes
(server_routes/), not a copy: app.py mounts their handlers behind the same guard, policy and errors.
"""
