"""Runs on an endpoint: real-time or async by the config it serves (aws/runtime.py), the async runs followed
by this process's one watch (aws/async_watch.py) and its notices (aws/notifications.py), cancel markers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from ..core.cancel_tokens import marker
from ..core.endpoints import EndpointNotFound, EndpointNotReady, InvocationFailed
from ..core.executions import CANCEL_PREFIX
from ..core.records import EndpointView
from ..core.worker_contract import Invocation, WorkerEvent, WorkerResult
from . import naming, notifications, runtime
from .async_watch import AsyncWatch
from .sagemaker_views import SageMakerViews


class SageMakerInvocations(SageMakerViews):
    """Invocations: routed by the endpoint's config, async runs watched and resumed."""

    def _still(self, endpoint: str, d: dict | None) -> None:
        """A DescribeEndpoint of the async watch: what runs kept of the endpoint goes if SageMaker now says
        otherwise (another ComfyUI stopped, deleted, updated or scaled it), and is kept VIEW_KEPT_S s more if not."""
        kept = self._views.get(endpoint)
        if kept is None:
            return
        view = kept[1]
        variants = (d or {}).get("ProductionVariants") or [{}]
        if d is None or (d["EndpointStatus"], d.get("EndpointConfigName"), variants[0].get("CurrentInstanceCount", 0)) \
                != (view["state"], view.get("endpoint_config"), view.get("instances")):
            self.forget_views(endpoint)
        else:
            self._views[endpoint] = (time.monotonic(), view)

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """SageMaker sends each invocation to any instance, so a second one cannot reach the run: the
        worker that has it watches for this marker in the store (and skips a queued request that has one).
        The marker carries the run's cancel token: whoever else may write it cannot cancel the run."""
        if self.store is not None:
            self.store.put(f"{CANCEL_PREFIX}{execution_id}", marker(token))

    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """On the endpoint as this process knows it (`known`). An invocation that fails drops that; one that
        SageMaker did not accept is then checked against a fresh DescribeEndpoint, so a run on an endpoint stopped
        or deleted elsewhere fails saying so (EndpointNotReady, EndpointNotFound), as it did before it was kept."""
        accepted = False

        def told(event: WorkerEvent) -> None:
            nonlocal accepted
            accepted = accepted or event.get("type") == "sagemaker.resumable"
            on_event(event)

        try:
            return self._invoke(name, body, told)
        except (EndpointNotReady, EndpointNotFound):  # said of the endpoint already
            self.forget_views(naming.endpoint_name(name, self.store_uri))
            raise
        except Exception:
            self.forget_views(naming.endpoint_name(name, self.store_uri))
            if not accepted:
                try:
                    self.check_ready(name)  # described afresh (nothing is kept now): is the endpoint why?
                except (EndpointNotReady, EndpointNotFound):
                    raise
                except Exception:  # cannot tell: the invocation's own error stands
                    pass
            raise

    def _endpoint_config_of(self, endpoint: EndpointView) -> dict:
        """DescribeEndpointConfig of the config the endpoint serves, once per config while its view is kept."""
        name = endpoint.get("endpoint_config") or ""
        config = self._endpoint_configs.get(name)
        if config is None:
            try:
                config = self.sm.describe_endpoint_config(EndpointConfigName=name)
            except Exception as err:
                raise InvocationFailed(f"cannot read endpoint {endpoint['endpoint_name']}'s config: {err}") from None
            if endpoint["endpoint_name"] in self._views:
                self._endpoint_configs[name] = config
        return config

    def _invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        endpoint = self.check_ready(name)
        config = self._endpoint_config_of(endpoint)
        runtime_client = self.aws_client("sagemaker-runtime")
        if "AsyncInferenceConfig" not in config:
            return runtime.invoke_realtime(runtime_client, endpoint["endpoint_name"], body, on_event)
        if self.store is None:
            raise InvocationFailed("async endpoints need the S3 store")
        if endpoint.get("instances", 1) == 0:
            # Async with min 0: the backlog alarm brings an instance back; say so instead of looking stuck.
            on_event({"type": "sagemaker.note", "data": {
                "message": "waiting for an instance: the endpoint scaled in to zero and is scaling out for this run"}})

        # Its end is noticed if its endpoint announces it on the topic this process's queue listens to.
        announced = (config["AsyncInferenceConfig"].get("OutputConfig", {}).get("NotificationConfig") or {}) \
            .get("SuccessTopic")
        notified = bool(self.notices and announced == self.notification_topic and self.notices.ready())
        return runtime.invoke_async(runtime_client, self.store.s3, self.store, self.store_uri,
                                    endpoint["endpoint_name"], body, on_event,
                                    follow=functools.partial(self.watch.follow, notified=notified))

    @cached_property
    def watch(self) -> AsyncWatch:
        """This process's async runs, all watched by one loop; DescribeEndpoint once per endpoint for them all."""
        def there(endpoint_name: str) -> bool:
            try:
                d = self.describe_endpoint(endpoint_name)
            except Exception:  # a passing error is not a deletion
                return True
            self._still(endpoint_name, d)
            return d is not None

        watch = AsyncWatch(self.store.s3, self.store, there)
        watch.notices = self.notices
        return watch

    @cached_property
    def notices(self) -> notifications.Notices | None:
        """This process's queue on the notification topic (None without a topic): made at its first async run."""
        if not (self.notification_topic and self.instance):
            return None
        name = notifications.queue_name(naming.store_digest(self.store_uri), self.instance)
        # The topic is in the endpoints' region (the stack makes both): the queue is made there too.
        return notifications.Notices(self.aws_client("sqs"), self.aws_client("sns"), self.notification_topic, name,
                                     self.instance, lambda inference_id: self.watch.nudge(inference_id))

    def stop_listening(self) -> None:
        """The services close: this process's notices queue goes, and the runs still in flight are polled for."""
        notices = self.__dict__.get("notices")
        if notices is not None:
            notices.close()
            if "watch" in self.__dict__:
                self.watch.poll_all()

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """An async run another process invoked and stopped following: its result still lands in S3."""
        if self.store is None:
            raise InvocationFailed("async endpoints need the S3 store")
        endpoint = self.get(name)
        return self.watch.follow(endpoint["endpoint_name"], execution_id, resume, on_event)
