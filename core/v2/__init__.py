"""The Comfy API v2 (Comfy-Org's protocol, mounted per environment): a v2 job is one of our executions seen
through it; its views, event streams, assets and Idempotency-Key. The domain below it never imports it
(but core/template_executions.py, whose inputs may be v2 asset references)."""
