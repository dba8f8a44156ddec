"""Drop-in OpenAI and Anthropic SDK clients: agent frameworks keep their code, wflo budgets every call."""

from wflo_core.llm.dropin.clients import DropinClients as DropinClients

__all__ = ["DropinClients"]
