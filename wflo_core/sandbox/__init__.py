"""Running untrusted (agent-written) code: one API, a Docker backend and a process backend.

with open_sandbox() as sandbox:
    result = sandbox.run("print(sum(range(10)))", files_in={"data.csv": b"..."}, timeout=10)
    result.exit_code, result.stdout, result.killed_reason, result.files_out
"""

from wflo_core.sandbox.base import LANGUAGES as LANGUAGES
from wflo_core.sandbox.base import Sandbox as Sandbox
from wflo_core.sandbox.factory import open_sandbox as open_sandbox
from wflo_core.sandbox.llm_code import extract_code as extract_code
from wflo_core.sandbox.llm_code import result_metadata as result_metadata
from wflo_core.sandbox.llm_code import run_sandboxed as run_sandboxed
from wflo_core.sandbox.policy import SandboxLimits as SandboxLimits
from wflo_core.sandbox.result import KilledReason as KilledReason
from wflo_core.sandbox.result import SandboxResult as SandboxResult
