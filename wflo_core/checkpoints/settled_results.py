"""LLM answers a run already paid for, kept so a re-executed step reuses them instead of paying again.

After a call settles, its response is saved as a checkpoint named ``llm:<step key>:<n>`` (the n-th
call of the step) together with the request's key. A re-executed step (a retry, a resume from
failure, an approved continuation) asks for its n-th call first: when the same request was
answered along the run chain, that answer comes back and nothing is sent or charged.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from wflo_core.cache.codec import decode_response, encode_response
from wflo_core.cache.keys import cache_key
from wflo_core.calls import LLMRequest, LLMResponse
from wflo_core.checkpoints.store import CheckpointStore

PREFIX = "llm:"


def result_name(step_key: str, seq: int) -> str:
    return f"{PREFIX}{step_key}:{seq}"


class SettledResults:
    def __init__(self, store: CheckpointStore) -> None:
        self.store = store

    def remember(
        self,
        session: Session,
        *,
        run_id: str,
        workflow: str,
        step_key: str,
        seq: int,
        request: LLMRequest,
        response: LLMResponse,
    ) -> None:
        self.store.save_in(
            session,
            run_id=run_id,
            workflow=workflow,
            step_key=step_key,
            name=result_name(step_key, seq),
            state={"request_key": cache_key(request), "response": encode_response(response).decode()},
        )

    def recall(self, *, run_id: str, step_key: str, seq: int, request: LLMRequest) -> LLMResponse | None:
        """The answer to this exact request as the step's ``seq``-th call on the chain, or None."""
        saved = self.store.load(run_id, result_name(step_key, seq))
        if saved is None or saved.state.get("request_key") != cache_key(request):
            return None
        try:
            return decode_response(saved.state["response"])
        except (KeyError, ValueError):
            return None
